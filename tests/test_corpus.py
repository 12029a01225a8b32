"""`xlspt label`: a corpus labelled by several saved classifiers in one pass, on tiny random-weight models and real
SIB-200 sentences. Answers are compared with what `xlspt predict` gives for the same saved classifier and text."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from xlspt.cli import main
from xlspt.corpus import MANIFEST
from xlspt.corpus.labelling import BATCH_EARLIER, BATCH_NONE
from xlspt.pipeline import LoadOptions, PredictOptions, predict

TINY_RUN = ["--epochs", "2", "--shots", "2", "--quiet", "--dtype", "float32", "--langs", "eng_Latn,fra_Latn"]
LANGS = ("eng_Latn", "fra_Latn", "swh_Latn")


def train(out: Path, model: Path, data: Path, *extra: str) -> Path:
    assert main(["run", "--preset", "study", "--model", str(model), "--data", str(data), "--out", str(out), *TINY_RUN, *extra]) == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dirs, sib200_dir) -> dict[str, Path]:
    """On the tiny Gemma 3: a prompt, a content-free ensemble, a batch-calibrated prompt, a prompt calibrated on
    unlabeled texts and a probe; a prompt on the tiny BLOOM; the batch-calibrated prompt self-trained on French and German dev texts."""
    root, gemma, bloom = tmp_path_factory.mktemp("label-runs"), tiny_model_dirs["gemma3"], tiny_model_dirs["bloom"]
    found = {
        "topics": train(root / "topics", gemma, sib200_dir, "--prompt-length", "2"),
        "voted": train(root / "voted", gemma, sib200_dir, "--prompt-length", "3", "--ensemble", "2",
                       "--calibration", "content-free"),
        "batched": train(root / "batched", gemma, sib200_dir, "--prompt-length", "2", "--seed", "3", "--calibration", "batch"),
        "unlabeled": train(root / "unlabeled", gemma, sib200_dir, "--prompt-length", "2", "--calibration", "unlabeled"),
        "probe": train(root / "probe", gemma, sib200_dir, "--method", "probe"),
        "bloom": train(root / "bloom", bloom, sib200_dir, "--prompt-length", "2"),
    }
    assert main(["self-train", "--prompt", str(found["batched"]), "--out", str(root / "self-trained"), "--data",
                 str(sib200_dir), "--langs", "fra_Latn,deu_Latn", "--epochs", "1", "--per-class", "2", "--quiet"]) == 0
    found["self-trained"] = root / "self-trained"
    return found


def sentences(sib200_dir: Path, split: str = "test", per_language: int = 20) -> pd.DataFrame:
    """``doc, text, lang`` rows: the first sentences of each of :data:`LANGS`."""
    frames = [pd.read_csv(sib200_dir / lang / f"{split}.tsv", sep="\t")[["text"]].head(per_language).assign(lang=lang)
              for lang in LANGS]
    rows = pd.concat(frames, ignore_index=True)
    return rows.assign(doc=[f"d{i}" for i in range(len(rows))])[["doc", "text", "lang"]]


def write_parquet(frame: pd.DataFrame, path: Path, row_group: int = 16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=row_group)
    return path


def label(*args: str) -> int:
    return main(["label", "--quiet", *args])


def read_output(folder: Path) -> pd.DataFrame:
    manifest = json.loads((folder / MANIFEST).read_text())
    frames = []
    for entry in manifest["shards"]:
        path = folder / entry["output"]
        frames.append(pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_json(path, lines=True, dtype=False))
    return pd.concat(frames, ignore_index=True)


def predicted(run: Path, texts: list[str], language: str | None = None) -> pd.DataFrame:
    frames, _, _ = predict(str(run), texts, load=LoadOptions(), options=PredictOptions(language=language, top_k=2))
    return pd.concat(list(frames), ignore_index=True)


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_labels_equal_predicts_answers_for_every_task_in_one_pass(runs, sib200_dir, tmp_path, fmt):
    rows = sentences(sib200_dir)
    write_parquet(rows[:25], tmp_path / "in" / "part-0.parquet")
    write_parquet(rows[25:], tmp_path / "in" / "sub" / "part-1.parquet")
    out = tmp_path / "out"
    assert label("--task", f"topics={runs['topics']}", "--task", f"voted={runs['voted']}", "--task", f"probe={runs['probe']}",
                 "--input", str(tmp_path / "in"), "--output", str(out), "--id-column", "doc", "--lang-column", "lang",
                 "--top-k", "2", "--output-format", fmt, "--chunk-rows", "7") == 0
    got = read_output(out)
    assert got["doc"].tolist() == rows["doc"].tolist()  # every row once, in order
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob(f"*.{fmt}")) == \
           [f"part-0.{fmt}", f"sub/part-1.{fmt}"]
    for task in ("topics", "voted", "probe"):
        for lang, group in rows.groupby("lang"):
            expected = predicted(runs[task], group["text"].tolist(), lang if task == "voted" else None)
            mine = got.set_index("doc").loc[group["doc"]]
            assert mine[f"{task}_label"].tolist() == expected["label"].tolist(), (task, lang)
            assert mine[f"{task}_probability"].tolist() == pytest.approx(expected["probability"].tolist(), abs=1e-5)
            for top, want in zip(mine[f"{task}_top_k"], expected["top_k"]):
                assert [t["label"] for t in top] == [t["label"] for t in want]
                assert [t["probability"] for t in top] == pytest.approx([t["probability"] for t in want], abs=1e-5)
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["status"] == "complete" and manifest["rows"] == len(rows) and set(manifest["tasks"]) == {"topics", "voted", "probe"}
    assert manifest["tasks"]["voted"]["sha256"] == json.loads((runs["voted"] / "prompt.json").read_text())["prompt_sha256"]
    assert manifest["dtype"] == "float32" and manifest["settings"]["chunk_rows"] == 7


def test_every_format_and_texts_that_are_not_texts(runs, sib200_dir, tmp_path):
    rows = sentences(sib200_dir, per_language=6)
    inputs = tmp_path / "in"
    inputs.mkdir()
    texts = rows["text"].tolist()
    rows[["doc", "text"]].to_csv(inputs / "a.csv", index=False)
    rows[["doc", "text"]].to_csv(inputs / "a.tsv", index=False, sep="\t")  # the same stem: the suffix stays in the name
    with open(inputs / "b.jsonl", "w", encoding="utf-8") as handle:
        for i, text in enumerate([texts[0], "", None, 42, "   ", texts[1]]):
            handle.write(json.dumps({"doc": f"j{i}", "text": text}) + "\n")
    (inputs / "c.txt").write_text("\n".join(texts[:4]) + "\n\n" + texts[4] + "\n", encoding="utf-8")
    out = tmp_path / "out"
    assert label("--task", f"topics={runs['topics']}", "--input", str(inputs), "--output", str(out),
                 "--output-format", "jsonl") == 0
    manifest = json.loads((out / MANIFEST).read_text())
    by_input = {e["input"]: e for e in manifest["shards"]}
    assert {k: (v["output"], v["rows"], v["empty"]) for k, v in by_input.items()} == {
        "a.csv": ("a.csv.jsonl", 18, 0), "a.tsv": ("a.tsv.jsonl", 18, 0), "b.jsonl": ("b.jsonl", 6, 4),
        "c.txt": ("c.jsonl", 6, 1)}
    for shard in ("a.csv.jsonl", "b.jsonl", "c.jsonl"):  # one JSON object a line, no blank line between chunks
        assert all(json.loads(line) for line in (out / shard).read_text(encoding="utf-8").splitlines())
    b = pd.read_json(out / "b.jsonl", lines=True, dtype=False)
    assert b["source"].tolist() == ["b.jsonl"] * 6 and b["row"].tolist() == list(range(6))
    assert b["topics_label"].isna().tolist() == [False, True, True, True, True, False]
    expected = predicted(runs["topics"], [texts[0], texts[1]])
    assert b["topics_label"].dropna().tolist() == expected["label"].tolist()
    c = pd.read_json(out / "c.jsonl", lines=True, dtype=False)
    assert c["topics_label"].isna().tolist() == [False] * 4 + [True, False]


def test_refused_at_start_with_one_line_and_nothing_written(runs, sib200_dir, tmp_path, capsys):
    rows = sentences(sib200_dir, per_language=4)
    good = write_parquet(rows, tmp_path / "in" / "good.parquet")
    write_parquet(rows.assign(doc="same"), tmp_path / "dup" / "x.parquet")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.parquet").write_bytes(b"not parquet at all")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "lines.txt").write_text("one\ntwo\n")
    self_trained_texts = pd.read_csv(sib200_dir / "fra_Latn" / "dev.tsv", sep="\t")[["text"]].head(5)
    write_parquet(self_trained_texts, tmp_path / "seen" / "x.parquet")

    def refused(*args: str, input: Path = good) -> str:
        out = tmp_path / "refused-out"
        capsys.readouterr()
        assert label("--input", str(input), "--output", str(out), *args) == 2
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and "Traceback" not in err, err
        assert not out.exists() or not any(out.iterdir()), list(out.iterdir())
        return lines[0]

    topics = f"topics={runs['topics']}"
    assert "no file matches" in refused("--task", topics, input=tmp_path / "nothing-*.parquet")
    assert "cannot read" in refused("--task", topics, input=tmp_path / "bad")
    assert "has no column 'body'" in refused("--task", topics, "--text-column", "body")
    assert "ids must be unique" in refused("--task", topics, "--id-column", "doc", input=tmp_path / "dup")
    assert "different models" in refused("--task", topics, "--task", f"b={runs['bloom']}")
    assert "--lang-column" in refused("--task", f"voted={runs['voted']}")
    assert "unlabeled texts" in refused("--task", f"u={runs['unlabeled']}")
    assert "self-trained on" in refused("--task", f"s={runs['self-trained']}", input=tmp_path / "seen")
    assert "plain text" in refused("--task", topics, "--id-column", "doc", input=tmp_path / "text")
    assert "--top-k" in refused("--task", topics, "--top-k", "0")
    write_parquet(rows.assign(lang="zho"), tmp_path / "zho" / "x.parquet")
    assert "x.parquet row 0" in refused("--task", topics, "--lang-column", "lang", input=tmp_path / "zho")
    assert "inside --input" in refused_inside(tmp_path, topics, capsys)
    assert label("--task", f"s={runs['self-trained']}", "--input", str(good), "--output", str(tmp_path / "ok")) == 0


def refused_inside(tmp_path: Path, task: str, capsys) -> str:
    capsys.readouterr()
    assert label("--task", task, "--input", str(tmp_path / "in"), "--output", str(tmp_path / "in" / "labels")) == 2
    return capsys.readouterr().err


def test_a_rerun_labels_what_is_missing_and_refuses_other_tasks(runs, sib200_dir, tmp_path, capsys):
    rows = sentences(sib200_dir, per_language=10)
    for k in range(3):
        write_parquet(rows[k * 10:(k + 1) * 10], tmp_path / "in" / f"{k}.parquet")
    out = tmp_path / "out"
    args = ["--task", f"topics={runs['topics']}", "--input", str(tmp_path / "in" / "*.parquet"), "--output", str(out),
            "--id-column", "doc"]
    assert label(*args) == 0
    first = read_output(out)
    (out / "1.parquet").unlink()
    capsys.readouterr()
    assert label(*args) == 0
    log = capsys.readouterr().err
    assert "labelling 1 of 3 shards" in log and "2 done before" in log
    pd.testing.assert_frame_equal(read_output(out), first)
    assert label(*args) == 0 and "labelling" not in capsys.readouterr().err  # nothing left to do
    other = ["--task", f"probe={runs['probe']}", *args[2:]]
    assert label(*other) == 2
    assert "made with other tasks" in capsys.readouterr().err
    assert label(*other, "--overwrite") == 0
    assert read_output(out).columns.tolist() == ["doc", "probe_label", "probe_probability"]


def test_batch_calibration_per_chunk_and_language_and_a_short_tail(runs, sib200_dir, tmp_path):
    texts = pd.concat([pd.read_csv(sib200_dir / "fra_Latn" / f"{split}.tsv", sep="\t") for split in ("test", "dev")])
    texts = texts["text"].head(70).tolist()
    assert len(texts) == 70
    few = pd.read_csv(sib200_dir / "swh_Latn" / "test.tsv", sep="\t")["text"].head(5).tolist()
    write_parquet(pd.DataFrame({"text": texts}), tmp_path / "in" / "fra.parquet")
    write_parquet(pd.DataFrame({"text": few}), tmp_path / "in" / "swh.parquet")
    out = tmp_path / "out"
    assert label("--task", f"batched={runs['batched']}", "--input", str(tmp_path / "in"), "--output", str(out),
                 "--lang", "fra_Latn", "--chunk-rows", "32") == 0
    manifest = json.loads((out / MANIFEST).read_text())
    scored = {e["input"]: e["scored"]["batched"] for e in manifest["shards"]}
    assert scored == {"fra.parquet": {"b:batch": 64, BATCH_EARLIER: 6}, "swh.parquet": {BATCH_NONE: 5}}
    got = pd.read_parquet(out / "fra.parquet")
    frame = predicted(runs["batched"], texts[32:64])  # batch calibration on the same 32 texts
    assert got["batched_probability"][32:64].tolist() == pytest.approx(frame["probability"].tolist(), abs=1e-5)


def test_kill_9_mid_shard_then_a_rerun_labels_every_row_exactly_once(runs, sib200_dir, tmp_path):
    rows = pd.concat([sentences(sib200_dir, per_language=100)] * 4, ignore_index=True)
    rows["doc"] = [f"r{i}" for i in range(len(rows))]
    for k in range(3):
        write_parquet(rows[k * 400:(k + 1) * 400], tmp_path / "in" / f"{k}.parquet")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "xlspt.cli", "label", "--quiet", "--task", f"topics={runs['topics']}", "--task",
               f"probe={runs['probe']}", "--input", str(tmp_path / "in"), "--output", str(out), "--id-column", "doc",
               "--chunk-rows", "8", "--batch-size", "4"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:  # one shard done, the next one half written
        if (out / "0.parquet").is_file() and any(out.glob(".1.parquet.*.tmp")):
            break
        time.sleep(0.05)
    assert process.poll() is None, process.stderr.read()
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert (out / "0.parquet").is_file() and not (out / "1.parquet").exists()
    assert subprocess.run(command, capture_output=True, text=True, timeout=300).returncode == 0
    got = read_output(out)
    assert sorted(got["doc"]) == sorted(rows["doc"]) and got["doc"].is_unique
    assert not list(out.rglob("*.tmp"))
    expected = predicted(runs["topics"], rows["text"][400:800].tolist())
    assert got.set_index("doc").loc[rows["doc"][400:800], "topics_label"].tolist() == expected["label"].tolist()


@pytest.mark.slow
def test_memory_stays_flat_over_a_million_rows(runs, sib200_dir, tmp_path):
    """A million short rows in four Parquet shards: the labelling process's peak RSS in the last quarter of the rows
    stays within 40 MB of its peak in the first quarter. The rows repeat 42 short texts, so that the test measures
    reading, scoring chunk by chunk and writing, not the model (each chunk reads its distinct texts once)."""
    import psutil

    texts = [" ".join(t.split()[:6]) for t in pd.read_csv(sib200_dir / "eng_Latn" / "test.tsv", sep="\t")["text"]]
    for k in range(4):
        rows = pd.DataFrame({"text": [texts[(i * 7 + k) % len(texts)] for i in range(250_000)]})
        write_parquet(rows, tmp_path / "in" / f"{k}.parquet", row_group=65536)
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "xlspt.cli", "label", "--quiet", "--task", f"topics={runs['topics']}",
                                "--input", str(tmp_path / "in"), "--output", str(out), "--chunk-rows", "4096"],
                               stderr=subprocess.PIPE, text=True)
    peaks = {0: 0, 3: 0}
    watched = psutil.Process(process.pid)
    while process.poll() is None:
        done = len(list((out / ".done").glob("*.json"))) if (out / ".done").is_dir() else 0
        started = done or any(out.glob(".*.tmp"))  # the first quarter begins once the model is loaded
        if done in peaks and started:
            try:
                peaks[done] = max(peaks[done], watched.memory_info().rss)
            except psutil.NoSuchProcess:
                break
        time.sleep(0.02)
    assert process.wait() == 0, process.stderr.read()
    assert read_output(out).shape[0] == 1_000_000
    assert peaks[0] and peaks[3], peaks
    print(f"peak RSS, first quarter {peaks[0] / 1024**2:.1f} MB, last quarter {peaks[3] / 1024**2:.1f} MB")
    assert peaks[3] - peaks[0] < 40 * 1024**2, f"RSS grew by {(peaks[3] - peaks[0]) / 1024**2:.1f} MB: {peaks}"
