"""Load: predictions stream from standard input; one prompt on all 205 languages and a sweep of 50 runs
finish with every result present and resident memory flat (tiny models; the figures on the embedded model
are in benchmarks/README.md)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import xlspt
from xlspt.cli import main


def rss_mb() -> float:
    """Resident memory of this process, in MB (Linux's /proc; psutil elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import psutil

    return psutil.Process().memory_info().rss / 2**20


@pytest.fixture(scope="module")
def prompt_dir(tmp_path_factory, tiny_model_dirs, sib200_dir):
    out = tmp_path_factory.mktemp("prompt")
    assert main(["train", "--model", str(tiny_model_dirs["gemma3"]), "--data", str(sib200_dir), "--shots", "2",
                 "--epochs", "1", "--prompt-length", "2", "--out", str(out), "--quiet", "--overwrite"]) == 0
    return out


def test_predict_streams_ten_thousand_lines_from_standard_input(prompt_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "xlspt.cli", "predict", "--prompt", str(prompt_dir), "--format", "json"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    lines = [f"line {i}: the team won the match and parliament voted" for i in range(10_000)]
    process.stdin.write("\n".join(lines[:200]) + "\n")
    process.stdin.flush()
    first = process.stdout.readline()  # answered while 9,800 lines are still unwritten
    assert first.startswith('{"text": "line 0:')
    import threading

    def feed():  # from another thread: the answers must be read while the rest is written, or both pipes fill
        process.stdin.write("\n".join(lines[200:]) + "\n")
        process.stdin.close()

    writer = threading.Thread(target=feed)
    writer.start()
    rest = process.stdout.read().splitlines()
    writer.join()
    process.wait(timeout=300)
    assert process.returncode == 0
    assert len(rest) + 1 == 10_000 and rest[-1].startswith('{"text": "line 9999:')


@pytest.mark.slow
def test_one_prompt_on_all_205_languages_keeps_memory_flat(prompt_dir, tiny_models, sib200_dir, record_property):
    data = xlspt.TaskData.resolve(sib200_dir)
    languages = data.languages()
    assert len(languages) == 205
    clf = xlspt.PromptClassifier.load(prompt_dir, tiny_models["gemma3"])
    memory = []
    original = data.split

    def split(lang, name):  # one reading of each language's test split: a point of the memory curve
        if name == "test":
            memory.append(rss_mb())
        return original(lang, name)

    data.split = split
    results = clf.evaluate(data, languages, progress=False)
    assert results["language"].tolist() == languages and (results["n"] > 0).all()
    growth = memory[-1] - memory[9]
    record_property("rss_peak_mb", max(memory))
    record_property("rss_growth_10th_to_last_mb", growth)
    print(f"205 languages: peak RSS {max(memory):.0f} MB, growth from the 10th to the last language {growth:+.1f} MB")
    # Each language's rows are kept (the data is read once), about 0.1 MB each; anything per-language beyond that leaks.
    assert growth < 60, f"resident memory grew {growth:.0f} MB over 195 languages"


@pytest.mark.slow
def test_a_sweep_of_fifty_runs_keeps_memory_flat(tmp_path, tiny_model_dirs, sib200_dir, record_property):
    from xlspt.study import ResultStore, expand, run_sweep

    spec = expand({"model": str(tiny_model_dirs["gemma3"]), "data": str(sib200_dir), "langs": ["eng_Latn", "fra_Latn"],
                   "shots": 2, "epochs": 1, "prompt_length": [1, 2, 3, 4, 5], "seed": list(range(10))})
    assert len(spec.runs) == 50
    store = ResultStore(tmp_path / "store")
    memory = []
    original = store.write_record

    def write_record(record):
        original(record)
        memory.append(rss_mb())

    store.write_record = write_record
    status = run_sweep(spec, store, progress=False)
    assert status.as_json()["done"] == 50 and len(store.records()) == 50
    growth = memory[-1] - memory[9]
    record_property("rss_peak_mb", max(memory))
    print(f"50 runs: peak RSS {max(memory):.0f} MB, growth from the 10th to the last run {growth:+.1f} MB")
    assert growth < 60, f"resident memory grew {growth:.0f} MB over 40 runs"
