"""Train, evaluate, predict, save and load with the Python API, in a dozen lines.

    python examples/quickstart.py [DATA] [OUT] [EPOCHS]

DATA: a SIB-200 folder (default: $XLSPT_DATA, else the Hub dataset); OUT: where the prompt is saved
(default runs/quickstart-python); EPOCHS: training epochs (default 20, as the recipe was measured).
"""

import sys

import xlspt

data_dir, out, epochs = (sys.argv[1:] + [None, None, None])[:3]
data = xlspt.Sib200.resolve(data_dir)
model = xlspt.load_model()  # the embedded Gemma 3 270M, bfloat16 where this CPU runs it fast
clf = xlspt.PromptClassifier.train(model, data, training=xlspt.TrainConfig(epochs=int(epochs or 20)))  # the quality recipe
results = clf.evaluate(data, ["eng_Latn", "fra_Latn", "swh_Latn"])
print(xlspt.format_results_table(results, xlspt.aggregate(results)))
clf.save(out or "runs/quickstart-python")
again = xlspt.PromptClassifier.load(out or "runs/quickstart-python")  # the model named in prompt.json
print(again.classify(["Le match s'est terminé sur un score nul.", "Bunge limepitisha sheria mpya."], top_k=2))
