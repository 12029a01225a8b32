"""What a practitioner gets on an own task: the study's single prompt, the default recipe and the probe.

    python benchmarks/own_tasks.py --sib200 ../shared/sib200 --store ~/xlspt-own-tasks [--json]

Two own tasks made from SIB-200 with their own label names: the README's three coarse topics
(``examples/coarse_topics.py``: one CSV; English, French, Swahili) and four specific topics
(``examples/specific_topics.py``: JSON Lines per language; English and seven targets). Each is
trained on 8 English examples per class, seeds 0-3, in three arms: ``study`` (the study's single
4-vector prompt, ``--preset study``), ``recipe`` (what ``xlspt run`` does without a preset: the
``quality`` preset, 8 reparameterized prompts with content-free calibration) and ``probe`` (the
baseline). Each run goes through a sweep of its own into ``--store`` (kill-safe; a second call runs
only what is missing), so that it trains and scores exactly as ``xlspt run`` with the same settings
(a sweep of many runs would train their prompts packed together, and bfloat16 results move with
batch shapes). The table gives the seed mean (min-max) of the test accuracy per language, the mean
over the target languages and the seconds per run (training and evaluation, as recorded).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np

from xlspt.study import ResultStore, RunStatus, run_sweep
from xlspt.study.config import RunConfig
from xlspt.study.spec import SweepSpec, run_preset

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SEEDS = (0, 1, 2, 3)
ARMS = ("study", "recipe", "probe")


def _example(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tasks(sib200: Path, work: Path) -> dict[str, dict]:
    """The two tasks' data (made once under ``work``) and the run settings that read them."""
    work.mkdir(parents=True, exist_ok=True)
    coarse, specific = work / "coarse-topics.csv", work / "specific-topics"
    if not coarse.is_file():
        _example("coarse_topics").make(sib200).to_csv(coarse, index=False)
    if not (specific / "eng_Latn.jsonl").is_file():
        _example("specific_topics").make(sib200, specific)
    return {
        "coarse topics (3 classes, CSV)": dict(data=str(coarse), text_column="sentence", label_column="topic",
                                               language_column="lang", split_column="split", langs="all"),
        "specific topics (4 classes, JSON Lines per language)": dict(data=str(specific), text_column="text",
                                                                     label_column="topic", split_column="split", langs="all"),
    }


def arm_config(arm: str, task: dict, seed: int) -> RunConfig:
    base = {"study": RunConfig(), "recipe": run_preset("quality"), "probe": RunConfig(method="probe")}[arm]
    return base.replace(**task, shots=8, seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sib200", required=True, help="the SIB-200 folder the tasks are made from")
    parser.add_argument("--store", required=True)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    store = ResultStore(args.store)
    rows = []
    for name, task in tasks(Path(args.sib200), Path(args.store) / "tasks").items():
        configs = {(arm, seed): arm_config(arm, task, seed) for arm in ARMS for seed in SEEDS}
        ids = {}
        for key, config in configs.items():  # one run per sweep: trained and scored as `xlspt run` would
            status = run_sweep(SweepSpec(f"{name} {key[0]} seed {key[1]}", {}, (config,)), store)
            if status.count(RunStatus.FAILED):
                raise SystemExit(f"{name}, {key[0]} seed {key[1]} failed: see {args.store}")
            ids[key] = status.runs[0].run_id
        for arm in ARMS:
            records = [store.record(ids[(arm, seed)]) for seed in SEEDS]
            languages = [r["language"] for r in records[0].results]
            accuracy = {lang: [next(r["accuracy"] for r in rec.results if r["language"] == lang) for rec in records]
                        for lang in languages}
            targets = [lang for lang in languages if lang != "eng_Latn"]
            transfer = [float(np.mean([accuracy[lang][i] for lang in targets])) for i in range(len(SEEDS))]
            rows.append({"task": name, "arm": arm, "seeds": len(records), "protocol": records[0].protocol,
                         "accuracy": {lang: float(np.mean(v)) for lang, v in accuracy.items()},
                         "range": {lang: [float(min(v)), float(max(v))] for lang, v in accuracy.items()},
                         "transfer_mean": float(np.mean(transfer)), "transfer_range": [min(transfer), max(transfer)],
                         "seconds_per_run": float(np.mean([r.timings.get("total", float("nan")) for r in records]))})
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    for name in dict.fromkeys(r["task"] for r in rows):
        group = [r for r in rows if r["task"] == name]
        languages = list(group[0]["accuracy"])
        print(f"\n{name}\n")
        print("| arm | protocol | " + " | ".join(languages) + " | targets' mean | s per run |")
        print("|---" * (len(languages) + 4) + "|")
        for r in group:
            cells = [f"{100 * r['accuracy'][lang]:.1f} ({100 * r['range'][lang][0]:.0f}-{100 * r['range'][lang][1]:.0f})"
                     for lang in languages]
            print(f"| {r['arm']} | {r['protocol']} | " + " | ".join(cells)
                  + f" | **{100 * r['transfer_mean']:.1f}** | {r['seconds_per_run']:.0f} |")


if __name__ == "__main__":
    main()
