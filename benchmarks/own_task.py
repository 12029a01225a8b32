"""The label-word loss and the step budget on an own task, on the embedded model.

    python examples/coarse_topics.py ../shared/sib200 coarse-topics.csv
    python benchmarks/own_task.py --data coarse-topics.csv --store ~/xlspt-own-task [--json]

The README's own task (SIB-200 relabelled into three coarse topics; English, French, Swahili) is
trained on 8 English examples per class with the study's settings otherwise, over a grid of
epochs (10, 20), training loss (the full vocabulary, the label words only), step budget (off,
200 steps) and seeds 0-3, through a sweep into ``--store`` (kill-safe; a second run only runs
what is missing). The table gives, per setting, the seed mean (and range) of the test accuracy
per language, the optimizer steps and whether the validation loss was still falling at the end.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict

import numpy as np

from xlspt.study import ResultStore, RunStatus, expand, run_sweep

GRID = {"epochs": [10, 20], "loss": ["vocabulary", "label-words"], "min_steps": [0, 200], "seed": [0, 1, 2, 3]}
COLUMNS = {"text_column": "sentence", "label_column": "topic", "language_column": "lang", "split_column": "split"}
LANGUAGES = ("eng_Latn", "fra_Latn", "swh_Latn")
CLASSES = 3  # leisure, science, world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the CSV of examples/coarse_topics.py")
    parser.add_argument("--store", required=True)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    spec = expand({"data": args.data, **COLUMNS, "langs": "all", "shots": 8, **GRID})
    store = ResultStore(args.store)
    status = run_sweep(spec, store)
    if status.count(RunStatus.FAILED):
        raise SystemExit(f"{status.count(RunStatus.FAILED)} runs failed: see {args.store}")
    groups = defaultdict(list)
    for record in store.records():
        if record.status != "done":
            continue
        config = record.config
        key = (config["epochs"], config.get("loss", "vocabulary"), config.get("min_steps", 0))
        groups[key].append(record)
    rows = []
    for (epochs, loss, min_steps), records in sorted(groups.items()):
        accuracy = {lang: [next(r["accuracy"] for r in rec.results if r["language"] == lang) for rec in records]
                    for lang in LANGUAGES}
        steps = [len(rec.history) * math.ceil(CLASSES * rec.config["shots"] / rec.config["batch_size"]) for rec in records]
        falling = sum(rec.best_epoch == len(rec.history) for rec in records)
        rows.append({"epochs": epochs, "loss": loss, "min_steps": min_steps, "seeds": len(records),
                     "accuracy": {lang: float(np.mean(v)) for lang, v in accuracy.items()},
                     "range": {lang: (float(min(v)), float(max(v))) for lang, v in accuracy.items()},
                     "epochs_run": [len(rec.history) for rec in records], "still_falling": falling,
                     "steps": steps})
    print("| epochs | loss | step budget | optimizer steps | English | French | Swahili | still falling at the end |")
    print("|---:|---|---:|---|---:|---:|---:|---:|")
    for row in rows:
        cells = [f"{100 * row['accuracy'][lang]:.1f} ({100 * row['range'][lang][0]:.1f}-{100 * row['range'][lang][1]:.1f})"
                 for lang in LANGUAGES]
        print(f"| {row['epochs']} | {row['loss']} | {row['min_steps'] or 'off'} | {'/'.join(map(str, sorted(set(row['steps']))))} | "
              f"{' | '.join(cells)} | {row['still_falling']}/{row['seeds']} |")
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
