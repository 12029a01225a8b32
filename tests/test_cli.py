"""The command line, end to end on a tiny model and real SIB-200 data, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

import xlspt
from xlspt.cli import main

TINY_RUN = ["--epochs", "2", "--shots", "2", "--prompt-length", "2", "--quiet"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_model_dirs, sib200_dir):
    out = tmp_path_factory.mktemp("run")
    code = main(["run", "--model", str(tiny_model_dirs["gemma3"]), "--data", str(sib200_dir),
                 "--langs", "eng_Latn,swh_Latn", "--out", str(out), *TINY_RUN])
    assert code == 0
    return out


def test_run_writes_prompt_results_and_summary(trained_run):
    assert sorted(p.name for p in trained_run.iterdir()) == [
        "README.md", "confusion", "per_class.csv", "prompt.json", "prompt.safetensors", "record.json", "results.csv",
        "summary.json", "summary.txt"
    ]
    assert sorted(p.name for p in (trained_run / "confusion").iterdir()) == ["eng_Latn.png", "swh_Latn.png"]
    per_class = pd.read_csv(trained_run / "per_class.csv")
    assert list(per_class.columns) == ["language", "label", "precision", "recall", "f1", "support"]
    assert len(per_class) == 14 and per_class.groupby("language")["support"].sum().tolist() == [204, 204]
    card = (trained_run / "README.md").read_text()
    assert "library_name: xlspt" in card and "swh_Latn" in card
    record = json.loads((trained_run / "record.json").read_text())
    assert record["status"] == "done" and record["config"]["prompt_length"] == 2
    assert [r["language"] for r in record["results"]] == ["eng_Latn", "swh_Latn"]
    results = pd.read_csv(trained_run / "results.csv")
    assert list(results.columns) == ["language", "accuracy", "macro_f1", "n", "protocol"]
    assert set(results["protocol"]) == {"zero-shot"}
    assert results["language"].tolist() == ["eng_Latn", "swh_Latn"]
    assert "mean transfer (1)" in (trained_run / "summary.txt").read_text()


def test_evaluate_reproduces_results_csv(trained_run, tmp_path, sib200_dir):
    code = main(["evaluate", "--prompt", str(trained_run), "--data", str(sib200_dir),
                 "--langs", "eng_Latn,swh_Latn", "--out", str(tmp_path), "--quiet"])
    assert code == 0
    assert (tmp_path / "results.csv").read_bytes() == (trained_run / "results.csv").read_bytes()


def test_predict_from_arguments_file_and_stdin(trained_run, tmp_path, capsys, monkeypatch):
    assert main(["predict", "--prompt", str(trained_run), "The team won.", "Parliament voted."]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[-1] for line in lines] == ["The team won.", "Parliament voted."]
    assert all(line.split("\t")[0] in xlspt.CATEGORIES for line in lines)
    assert all(1 / 7 <= float(line.split("\t")[1]) <= 1 for line in lines)
    texts = tmp_path / "texts.txt"
    texts.write_text("one\n\ntwo\n")
    assert main(["predict", "--prompt", str(trained_run / "prompt.safetensors"), "--file", str(texts)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("from stdin\n"))
    assert main(["predict", "--prompt", str(trained_run), "--file", "-"]) == 0
    assert capsys.readouterr().out.endswith("\tfrom stdin\n")


def _fails_cleanly(argv, match, capsys, out_dir=None):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("error: ") and match in err[-1], err
    assert "Traceback" not in "\n".join(err)
    if out_dir is not None:
        assert not out_dir.exists() or not any(out_dir.iterdir())


@pytest.mark.parametrize(
    "extra,match",
    [
        (["--langs", "eng_Latn,xyz_Latn"], "unknown language 'xyz_Latn'"),
        (["--train-lang", "klingon"], "unknown language 'klingon'"),
        (["--label-words", "a,b"], "needs 7 words"),
        (["--label-words", "earth,science,entertainment,politics,health,travel,sports science"], "not a single token"),
        (["--shots", "100"], "use --shots 58 or fewer"),
    ],
)
def test_bad_run_input_is_one_line_and_writes_nothing(extra, match, tiny_model_dirs, sib200_dir, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["run", "--model", str(tiny_model_dirs["xglm"]), "--data", str(sib200_dir),
            "--langs", "eng_Latn", "--out", str(out), *TINY_RUN, *extra]
    _fails_cleanly(argv, match, capsys, out)


def test_unknown_model_and_missing_data(tmp_path, sib200_dir, capsys):
    _fails_cleanly(["run", "--model", "no-such-model", "--data", str(sib200_dir), "--langs", "eng_Latn",
                    "--out", str(tmp_path / "o")], "unknown model 'no-such-model'", capsys, tmp_path / "o")
    _fails_cleanly(["run", "--data", str(tmp_path / "nowhere")], "does not exist", capsys)
    _fails_cleanly(["train", "--data", str(tmp_path / "nowhere")], "does not exist", capsys)


def test_train_without_data_reads_xlspt_data(tiny_model_dirs, sib200_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XLSPT_DATA", str(sib200_dir))
    assert main(["train", "--model", str(tiny_model_dirs["bloom"]), "--shots", "1", "--epochs", "1", "--quiet",
                 "--out", str(tmp_path / "p")]) == 0
    assert (tmp_path / "p" / "prompt.json").is_file()


def test_prompt_for_another_model_and_bad_prompt_files(trained_run, tiny_model_dirs, tmp_path, capsys):
    _fails_cleanly(["predict", "--prompt", str(trained_run), "--model", str(tiny_model_dirs["bloom"]), "hi"],
                   "this prompt was made for", capsys)
    _fails_cleanly(["predict", "--prompt", str(tmp_path), "hi"], "no prompt at", capsys)
    (tmp_path / "prompt.safetensors").write_bytes(b"not a tensor file")
    (tmp_path / "prompt.json").write_text("{}")
    _fails_cleanly(["predict", "--prompt", str(tmp_path), "hi"], "not a readable safetensors file", capsys)


def test_an_existing_run_is_not_overwritten_without_asking(trained_run, tiny_model_dirs, sib200_dir, capsys):
    before = (trained_run / "results.csv").read_bytes()
    _fails_cleanly(["run", "--model", str(tiny_model_dirs["gemma3"]), "--data", str(sib200_dir),
                    "--langs", "eng_Latn", "--out", str(trained_run), *TINY_RUN], "--overwrite", capsys)
    assert (trained_run / "results.csv").read_bytes() == before


def test_languages_and_models_listings(sib200_dir, capsys):
    assert main(["languages", "--study"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 53 and out[1].startswith("eng_Latn")
    assert main(["languages", "--data", str(sib200_dir)]) == 0
    assert len(capsys.readouterr().out.splitlines()) > 200
    assert main(["models"]) == 0
    assert "gemma-3-270m" in capsys.readouterr().out


def test_console_script_reports_errors_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "xlspt.cli", "evaluate", "--prompt", str(tmp_path), "--data", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


def test_evaluate_several_prompts_in_one_pass(trained_run, tmp_path_factory, tiny_model_dirs, sib200_dir, capsys):
    second = tmp_path_factory.mktemp("run2")
    assert main(["run", "--model", str(tiny_model_dirs["gemma3"]), "--data", str(sib200_dir), "--langs", "eng_Latn",
                 "--out", str(second), *TINY_RUN, "--seed", "1", "--prompt-length", "3"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--prompt", str(trained_run), "--prompt", str(second), "--data", str(sib200_dir),
                 "--langs", "eng_Latn,swh_Latn", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.count("== ") == 3
    first = pd.read_csv(trained_run / "results.csv")
    row = out.split("== ")[1].splitlines()
    eng = next(line for line in row if line.startswith("eng_Latn"))
    assert f"{100 * first['accuracy'][0]:.1f}%" in eng
    comparison = out.split("== comparison")[1].splitlines()
    mean_first = f"{100 * first['accuracy'].mean():.1f}%"
    assert next(line for line in comparison if line.startswith(str(trained_run))).split()[1] == mean_first

    saved = tmp_path_factory.mktemp("several")
    assert main(["evaluate", "--prompt", str(trained_run), "--prompt", str(second), "--data", str(sib200_dir),
                 "--langs", "eng_Latn,swh_Latn", "--out", str(saved), "--overwrite", "--quiet"]) == 0
    results = pd.read_csv(saved / "results.csv")
    assert list(results.columns) == ["prompt", "language", "accuracy", "macro_f1", "n", "protocol"]
    assert results["prompt"].tolist() == [str(trained_run)] * 2 + [str(second)] * 2
    pd.testing.assert_frame_equal(results.iloc[:2, 1:].reset_index(drop=True), first)
    summary = json.loads((saved / "summary.json").read_text())
    assert [p["prompt"] for p in summary["prompts"]] == [str(trained_run), str(second)]
    assert "== comparison" in (saved / "summary.txt").read_text()


def test_train_resumes_from_a_run(trained_run, tiny_model_dirs, sib200_dir, tmp_path, capsys):
    out = tmp_path / "resumed"
    assert main(["train", "--model", str(tiny_model_dirs["gemma3"]), "--data", str(sib200_dir), "--resume", str(trained_run),
                 "--epochs", "1", "--shots", "2", "--out", str(out), "--quiet"]) == 0
    import json

    sidecar = json.loads((out / "prompt.json").read_text())
    assert sidecar["prompt_config"]["length"] == 2  # taken from the resumed prompt, not the default 4
    _fails_cleanly(["train", "--model", str(tiny_model_dirs["bloom"]), "--data", str(sib200_dir), "--resume", str(trained_run),
                    "--epochs", "1", "--out", str(tmp_path / "x")], "this prompt was made for", capsys, tmp_path / "x")
