"""Choose the default learning rate of the model's weights for the no-freezing arm, on English dev.

Trains prompt + model (``freeze: false``) on the default sample (8 English examples per class,
seed 0) for each candidate rate and scores English **dev** (99 sentences; test is never read).
The reference code's single rate (the prompt's 5e-3) is among the candidates.

    python benchmarks/select_model_lr.py --data ../shared/sib200 [--epochs 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import xlspt
from xlspt.data import sample_few_shot
from xlspt.engine import ReadoutConfig
from xlspt.evaluate import evaluate_prompts
from xlspt.study import RunConfig
from xlspt.train import train_prompts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--model", default=xlspt.EMBEDDED_DEFAULT)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--rates", default="1e-6,1e-5,1e-4,5e-3")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    data = xlspt.Sib200.resolve(args.data)
    loaded = xlspt.load_model(args.model, dtype=args.dtype)
    original = {k: v.detach().clone() for k, v in loaded.model.state_dict().items()}
    verbalizer = xlspt.build_verbalizer(loaded)
    examples = sample_few_shot(data, "eng_Latn", args.shots, seed=0)
    rows = []
    for rate in [float(r) for r in args.rates.split(",")]:
        config = RunConfig(freeze=False, model_lr=rate, epochs=args.epochs, shots=args.shots)
        started = time.time()
        [result] = train_prompts(loaded, verbalizer, examples, [config.prompt_config()], [config.train_config()],
                                 progress=True, desc=f"model_lr {rate:g}")
        if isinstance(result, Exception):
            rows.append({"model_lr": rate, "error": str(result)})
        else:
            [dev] = evaluate_prompts(loaded, verbalizer, [result.prompt.export()], data, ["eng_Latn"],
                                     ReadoutConfig(engine="naive"), split="dev", progress=False)
            rows.append({"model_lr": rate, "dev_accuracy": round(float(dev["accuracy"][0]), 4),
                         "dev_macro_f1": round(float(dev["macro_f1"][0]), 4), "best_epoch": result.best_epoch,
                         "best_val_loss": round(result.best_val_loss, 4), "seconds": round(time.time() - started)})
        print(rows[-1], flush=True)
        loaded.model.load_state_dict(original)
    best = max((r for r in rows if "dev_accuracy" in r), key=lambda r: (r["dev_accuracy"], -r["best_val_loss"]))
    print(f"best on English dev: model_lr {best['model_lr']:g} ({100 * best['dev_accuracy']:.1f}%)")
    if args.json:
        print(json.dumps({"dtype": str(loaded.dtype).removeprefix("torch."), "rows": rows, "best_model_lr": best["model_lr"]}))


if __name__ == "__main__":
    main()
