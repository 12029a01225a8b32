"""A sweep against the same runs as separate ``xlspt run`` commands, as a ratio in one run.

The 8 frozen-model runs: prompt lengths 1 and 4, reparameterization off and on (hidden size
200), seeds 0 and 1, each trained on 8 English examples per class for 20 epochs and evaluated
on the quickstart's 12 languages. Two groups of 4 share a training sample (one per seed).

* separately: 8 ``xlspt run`` processes one after another (each imports, loads the model,
  encodes its examples, trains and scores the 12 languages alone);
* as a sweep: one ``xlspt sweep`` process (the model loaded once; the 4 prompts of a sample
  trained together in one pass per step; the 8 prompts scored together, one text pass per
  language).

Both use the same dtype (``--dtype``, default auto) and an already converted model. The
script also checks that the two give the same per-language results for each run, up to
float rounding of the larger packed products.

    python benchmarks/bench_sweep.py --data ../shared/sib200 [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LANGS = "eng_Latn,deu_Latn,fra_Latn,spa_Latn,rus_Cyrl,zho_Hans,jpn_Jpan,arb_Arab,hin_Deva,swh_Latn,yor_Latn,quy_Latn"
GRID = [(length, reparam, seed) for seed in (0, 1) for length in (1, 4) for reparam in (0, 200)]


def xlspt(*args: str) -> list[str]:
    return [sys.executable, "-m", "xlspt.cli", *args]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--langs", default=LANGS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    common = ["--data", args.data, "--dtype", args.dtype, "--langs", args.langs]
    try:
        subprocess.run(xlspt("models"), check=True, capture_output=True)  # imports warm in the page cache
        started = time.perf_counter()
        separate = {}
        for length, reparam, seed in GRID:
            out = work / f"run-{length}-{reparam}-{seed}"
            subprocess.run(xlspt("run", *common, "--prompt-length", str(length), "--reparam-hidden", str(reparam),
                                 "--seed", str(seed), "--out", str(out), "--quiet"), check=True, capture_output=True)
            record = json.loads((out / "record.json").read_text())
            separate[record["run_id"]] = record
            print(f"  xlspt run len{length} reparam{reparam} seed{seed}: {time.perf_counter() - started:.0f} s so far",
                  file=sys.stderr, flush=True)
        separate_s = time.perf_counter() - started

        spec = work / "spec.yaml"
        spec.write_text(f"data: {args.data}\ndtype: {args.dtype}\nlangs: {args.langs}\n"
                        "prompt_length: [1, 4]\nreparam_hidden: [0, 200]\nseed: [0, 1]\n")
        started = time.perf_counter()
        subprocess.run(xlspt("sweep", str(spec), "--store", str(work / "store"), "--quiet"), check=True, capture_output=True)
        sweep_s = time.perf_counter() - started
        swept = {}
        for path in (work / "store" / "runs").glob("*/record.json"):
            record = json.loads(path.read_text())
            swept[record["run_id"]] = record
    finally:
        shutil.rmtree(work, ignore_errors=True)

    assert swept.keys() == separate.keys(), "the sweep and the separate runs should have the same run ids"
    # Both write results through the same code; differences come from rounding: the packed passes'
    # larger products round differently in bfloat16, and training compounds it (float32 agrees to ~1e-5).
    differences = [abs(a["accuracy"] - b["accuracy"]) for run_id in swept
                   for a, b in zip(swept[run_id]["results"], separate[run_id]["results"])]
    identical = sum(d == 0 for d in differences)
    dtype = next(iter(swept.values()))["config"]["dtype"]
    print(f"8 runs x {len(args.langs.split(','))} languages ({dtype}): separate xlspt run commands {separate_s:.0f} s, "
          f"one sweep {sweep_s:.0f} s: {separate_s / sweep_s:.2f}x")
    print(f"per-language accuracy: {identical} of {len(differences)} identical, largest difference "
          f"{100 * max(differences):.1f} points")
    if args.json:
        print(json.dumps({"dtype": dtype, "separate_s": round(separate_s, 1), "sweep_s": round(sweep_s, 1),
                          "sweep_speedup": round(separate_s / sweep_s, 2), "identical_results": identical,
                          "results": len(differences), "max_accuracy_difference": round(max(differences), 4)}))


if __name__ == "__main__":
    main()
