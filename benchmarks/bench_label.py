"""Corpus labelling: several tasks in one pass against one ``predict`` run per task.

    python benchmarks/bench_label.py --sib200 ../shared/sib200 --work ~/xlspt-bench-label [--json]

The corpus: SIB-200 test sentences of all 205 languages (``--per-language`` each, 20 by default: about 4,100
rows) in 8 Parquet shards, with a language column. The tasks: the study's single 4-vector prompt on the embedded
model (``--preset study``, seeds 0-7 on English, trained once under ``--work``). Each configuration runs in a fresh
process of its own (its peak RSS is its own): ``xlspt label``'s library with 1, 2, 4 and 8 tasks in one pass, and
``predict`` once per task for the first 4 tasks, one after another. Model loading is timed apart from labelling.
The table gives rows per second of labelling (rows x tasks per second for the separate runs' total), the ratio of
the 4 separate runs' labelling time to the 4-task pass, and the peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

SEEDS = tuple(range(8))
SHARDS = 8


def tasks(sib200: Path, work: Path) -> list[Path]:
    """The 8 study prompts (trained once)."""
    found = []
    for seed in SEEDS:
        out = work / "tasks" / f"seed{seed}"
        if not (out / "prompt.json").is_file():
            subprocess.run([sys.executable, "-m", "xlspt.cli", "train", "--preset", "study", "--data", str(sib200),
                            "--seed", str(seed), "--out", str(out), "--overwrite", "--quiet"], check=True)
        found.append(out)
    return found


def corpus(sib200: Path, work: Path, per_language: int) -> Path:
    """Test sentences of every language in :data:`SHARDS` Parquet shards (written once)."""
    import pandas as pd

    folder = work / f"corpus-{per_language}"
    if (folder / f"part-{SHARDS - 1}.parquet").is_file():
        return folder
    from xlspt.data.task import TaskData

    data = TaskData.resolve(str(sib200))
    rows = pd.concat([data.split(lang, "test").head(per_language).assign(lang=lang)[["text", "lang"]]
                      for lang in data.languages()], ignore_index=True)
    rows = rows.sample(frac=1.0, random_state=0).reset_index(drop=True)  # every shard holds many languages
    rows["doc"] = [f"r{i}" for i in range(len(rows))]
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-len(rows) // SHARDS)
    for k in range(SHARDS):
        rows[k * size:(k + 1) * size].to_parquet(folder / f"part-{k}.parquet", index=False)
    return folder


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_pass(folders: list[str], corpus_dir: str, out: str) -> dict:
    """Label the corpus with ``folders`` in one pass (in this process): load and labelling seconds, rows."""
    import shutil

    from xlspt.corpus import CorpusLabeller, LabelConfig
    from xlspt.corpus.shards import OutputShard, find_shards
    from xlspt.pipeline import LoadOptions

    shutil.rmtree(out, ignore_errors=True)
    config = LabelConfig(id_column="doc", lang_column="lang")
    started = time.perf_counter()
    labeller = CorpusLabeller.load({f"t{i}": f for i, f in enumerate(folders)}, config, LoadOptions())
    loaded = time.perf_counter()
    shards = find_shards(corpus_dir)
    rows = sum(labeller.label_shard(s, OutputShard.of(Path(out), s, config.output_format, [x.name for x in shards]))["rows"]
               for s in shards)
    return {"load_s": loaded - started, "label_s": time.perf_counter() - loaded, "rows": rows, "peak_rss_mb": peak_rss_mb()}


def separate_predicts(folders: list[str], corpus_dir: str) -> dict:
    """``predict`` once per task, one after another (in this process): load and scoring seconds, summed."""
    import pandas as pd

    from xlspt.pipeline import predict

    texts = pd.concat([pd.read_parquet(p) for p in sorted(Path(corpus_dir).glob("*.parquet"))])["text"].tolist()
    load_s = label_s = 0.0
    first = None
    for folder in folders:
        started = time.perf_counter()
        frames, _, _ = predict(folder, texts)  # loads the classifier now; the frames are scored when read
        loaded = time.perf_counter()
        answers = pd.concat(list(frames), ignore_index=True)
        load_s, label_s = load_s + loaded - started, label_s + time.perf_counter() - loaded
        first = answers if first is None else first
    return {"load_s": load_s, "label_s": label_s, "rows": len(first), "peak_rss_mb": peak_rss_mb(),
            "first_task": {"label": first["label"].tolist(), "probability": first["probability"].tolist()}}


def fresh(kind: str, folders: list[Path], corpus_dir: Path, out: Path) -> dict:
    """One configuration in a fresh process."""
    done = subprocess.run([sys.executable, __file__, "_one", kind, str(corpus_dir), str(out), *map(str, folders)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_one":
        kind, corpus_dir, out, *folders = sys.argv[2:]
        result = one_pass(folders, corpus_dir, out) if kind == "pass" else separate_predicts(folders, corpus_dir)
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sib200", required=True, type=Path)
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--per-language", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    folders = tasks(args.sib200, args.work)
    corpus_dir = corpus(args.sib200, args.work, args.per_language)
    results = {}
    for n in (1, 2, 4, 8):
        results[f"{n} in one pass"] = fresh("pass", folders[:n], corpus_dir, args.work / f"out-{n}")
        print(f"{n} tasks in one pass: {results[f'{n} in one pass']}", file=sys.stderr, flush=True)
    results["4 separate predicts"] = fresh("predict", folders[:4], corpus_dir, args.work / "unused")
    print(f"4 separate predicts: {results['4 separate predicts']}", file=sys.stderr, flush=True)
    agreement(results, args.work / "out-1")
    print(json.dumps(results, indent=2) if args.json else table(results))


def agreement(results: dict, labelled: Path) -> None:
    """How far the one-task pass's answers are from ``predict``'s for the same task and texts (bfloat16: batches of
    other shapes round differently)."""
    import numpy as np
    import pandas as pd

    mine = pd.concat([pd.read_parquet(p) for p in sorted(labelled.glob("*.parquet"))], ignore_index=True)
    theirs = results["4 separate predicts"].pop("first_task")
    difference = np.abs(mine["t0_probability"].to_numpy(dtype=float) - np.asarray(theirs["probability"]))
    same = float(np.mean(mine["t0_label"].to_numpy() == np.asarray(theirs["label"])))
    results["agreement with predict"] = {"labels_equal": same, "max_abs_probability_difference": float(difference.max()),
                                         "mean_abs_probability_difference": float(difference.mean())}


def table(results: dict) -> str:
    """The markdown table and the headline ratios."""
    lines = ["| configuration | load (s) | labelling (s) | rows | rows/s | rows x tasks/s | peak RSS (MB) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        if name == "agreement with predict":
            continue
        n = int(name.split()[0])
        lines.append(f"| {name} | {r['load_s']:.1f} | {r['label_s']:.1f} | {r['rows']} | {r['rows'] / r['label_s']:.1f} "
                     f"| {r['rows'] * n / r['label_s']:.1f} | {r['peak_rss_mb']:.0f} |")
    four, apart, one = results["4 in one pass"], results["4 separate predicts"], results["1 in one pass"]
    lines.append(f"\n4 tasks: one pass is {4 * one['label_s'] / four['label_s']:.2f}x faster than 4 one-task passes and "
                 f"{apart['label_s'] / four['label_s']:.2f}x faster than 4 separate predict runs "
                 f"(labelling time; {(apart['label_s'] + apart['load_s']) / (four['label_s'] + four['load_s']):.2f}x with "
                 f"loading); 1 task: label {one['rows'] / one['label_s']:.1f} rows/s, predict "
                 f"{apart['rows'] * 4 / apart['label_s']:.1f} rows/s (the mean of its 4 runs)")
    same = results["agreement with predict"]
    lines.append(f"task 1 against predict: {100 * same['labels_equal']:.2f}% of labels equal, probabilities within "
                 f"{same['max_abs_probability_difference']:.2g} (mean {same['mean_abs_probability_difference']:.2g})")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
