"""Load: predictions stream from standard input; one prompt on all 205 languages and a sweep of 50 runs
finish with every result present and resident memory flat on tiny models, and on the embedded model over
every fourth language (all 205 languages on it: benchmarks/README.md)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import xlspt
from xlspt.cli import main


def rss_mb(kind: str = "VmRSS") -> float:
    """Resident memory of this process in MB: ``VmRSS`` all of it, ``RssAnon`` its own (not pages of mapped
    files, such as model weights read in place). Linux's /proc; psutil's RSS elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(f"{kind}:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import psutil

    return psutil.Process().memory_info().rss / 2**20


@pytest.fixture(scope="module")
def prompt_dir(tmp_path_factory, tiny_model_dirs, sib200_dir):
    out = tmp_path_factory.mktemp("prompt")
    assert main(["train", "--preset", "study", "--model", str(tiny_model_dirs["gemma3"]), "--data", str(sib200_dir), "--shots", "2",
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
def test_one_prompt_on_all_205_languages_keeps_memory_flat(prompt_dir, tiny_models, full_sib200_dir, record_property):
    data = xlspt.TaskData.resolve(full_sib200_dir)
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


@pytest.mark.slow
def test_the_embedded_model_keeps_memory_flat_over_many_languages(full_data, record_property):
    """Every fourth language of the 205 (all scripts), 64 test sentences each, one prompt on the embedded model.

    New batch widths and new words come with every language: before batch widths were rounded to a bounded
    set and the tokenizer's word cache was turned off, memory rose by several MB per language. The
    process's own (anonymous) memory is measured: weights read in place from the model file (float32)
    page in as new languages use new rows of the embedding table, up to the file's size.
    """
    from scipy.stats import linregress

    from xlspt.evaluate import evaluate_prompts

    data = full_data
    gemma = xlspt.load_model(dtype="auto")
    verbalizer = xlspt.build_verbalizer(gemma)
    prompt = gemma.model.get_input_embeddings().weight[:4].detach().float().clone()
    languages = data.languages()[::4]
    memory, resident = [], []
    original = data.split

    def split(lang, name):
        if name == "test":
            memory.append(rss_mb("RssAnon"))
            resident.append(rss_mb())
            return original(lang, name).head(64)
        return original(lang, name)

    data.split = split
    try:
        results = evaluate_prompts(gemma, verbalizer, [prompt], data, languages, progress=False)[0]
    finally:
        del data.split
    assert results["language"].tolist() == languages and (results["n"] == 64).all()
    slope = linregress(range(len(memory) - 9), memory[9:]).slope
    record_property("rss_peak_mb", max(resident))
    record_property("anonymous_mb_per_language", slope)
    print(f"{len(languages)} languages ({gemma.dtype}): peak RSS {max(resident):.0f} MB; own memory from the 10th "
          f"language on {memory[-1] - memory[9]:+.1f} MB, trend {slope:+.2f} MB per language")
    print(" ".join(f"{m:.0f}" for m in memory))
    assert slope < 0.5, f"memory rose {slope:.2f} MB per language over {len(languages) - 9} languages"
