"""Choose the default learning rate of the lora method's adapters, on the development languages' dev splits.

Trains the default prompt (4 vectors) with low-rank adapters (rank 8, the attention query and value layers) on
the default sample (8 English examples per class, seed 0, 20 epochs) for each candidate rate, and scores the
dev splits of the 24 development languages (`xlspt languages`) and English dev. No target language of the 52
and no held-out language is read, and no test split.

    python benchmarks/select_lora_lr.py --data ../shared/sib200 [--rates 1e-3,1e-4] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import xlspt
from xlspt.data.languages import DEVELOPMENT_SET, language_sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--model", default=xlspt.EMBEDDED_DEFAULT)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--rates", default="1e-3,1e-4")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    data = xlspt.TaskData.resolve(args.data)
    model = xlspt.load_model(args.model, dtype=args.dtype)
    development = list(language_sets()[DEVELOPMENT_SET])
    rows = []
    for rate in (float(r) for r in args.rates.split(",")):
        started = time.time()
        clf = xlspt.LoraClassifier.train(model, data, shots=8, prompt=xlspt.PromptConfig(length=4),
                                         training=xlspt.TrainConfig(seed=0), lora=xlspt.LoraConfig(lr=rate),
                                         progress=False)
        trained = time.time() - started
        started = time.time()
        dev = clf.evaluate(data, development, split="dev", progress=False)
        english = clf.evaluate(data, ["eng_Latn"], split="dev", progress=False)
        rows.append({"lora_lr": rate, "development_languages": float(dev["accuracy"].mean()),
                     "english_dev": float(english["accuracy"].mean()), "best_epoch": clf.metadata.training.best_epoch,
                     "train_seconds": round(trained, 1), "evaluate_seconds": round(time.time() - started, 1)})
        print(json.dumps(rows[-1]) if args.json else
              f"lora_lr {rate:g}: development languages {100 * rows[-1]['development_languages']:.1f}%, English dev "
              f"{100 * rows[-1]['english_dev']:.1f}%, best epoch {rows[-1]['best_epoch']}, "
              f"{rows[-1]['train_seconds']:.0f} s training, {rows[-1]['evaluate_seconds']:.0f} s scoring", flush=True)


if __name__ == "__main__":
    main()
