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
    code = main(["run", "--preset", "study", "--model", str(tiny_model_dirs["gemma3"]), "--data", str(sib200_dir),
                 "--langs", "eng_Latn,swh_Latn", "--out", str(out), *TINY_RUN])
    assert code == 0
    return out


def test_run_writes_prompt_results_and_summary(trained_run, data):
    assert sorted(p.name for p in trained_run.iterdir()) == [
        "README.md", "confusion", "per_class.csv", "predictions.jsonl", "prompt.json", "prompt.safetensors", "record.json", "results.csv",
        "summary.json", "summary.txt"
    ]
    assert sorted(p.name for p in (trained_run / "confusion").iterdir()) == ["eng_Latn.png", "swh_Latn.png"]
    per_class = pd.read_csv(trained_run / "per_class.csv")
    assert list(per_class.columns) == ["language", "label", "precision", "recall", "f1", "support"]
    tested = [len(data.split(lang, "test")) for lang in ("eng_Latn", "swh_Latn")]
    assert len(per_class) == 14 and per_class.groupby("language")["support"].sum().tolist() == tested
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
    argv = ["run", "--preset", "study", "--model", str(tiny_model_dirs["xglm"]), "--data", str(sib200_dir),
            "--langs", "eng_Latn", "--out", str(out), *TINY_RUN, *extra]
    _fails_cleanly(argv, match, capsys, out)


def test_unknown_model_and_missing_data(tmp_path, sib200_dir, capsys):
    _fails_cleanly(["run", "--preset", "study", "--model", "no-such-model", "--data", str(sib200_dir), "--langs", "eng_Latn",
                    "--out", str(tmp_path / "o")], "unknown model 'no-such-model'", capsys, tmp_path / "o")
    _fails_cleanly(["run", "--preset", "study", "--data", str(tmp_path / "nowhere")], "does not exist", capsys)
    _fails_cleanly(["train", "--preset", "study", "--data", str(tmp_path / "nowhere")], "does not exist", capsys)


def test_train_without_data_reads_xlspt_data(tiny_model_dirs, sib200_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XLSPT_DATA", str(sib200_dir))
    assert main(["train", "--preset", "study", "--model", str(tiny_model_dirs["bloom"]), "--shots", "1", "--epochs", "1", "--quiet",
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
    _fails_cleanly(["run", "--preset", "study", "--model", str(tiny_model_dirs["gemma3"]), "--data", str(sib200_dir),
                    "--langs", "eng_Latn", "--out", str(trained_run), *TINY_RUN], "--overwrite", capsys)
    assert (trained_run / "results.csv").read_bytes() == before


def test_languages_and_models_listings(sib200_dir, data, capsys):
    assert main(["languages", "--study"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 53 and out[1].startswith("eng_Latn")
    assert main(["languages", "--data", str(sib200_dir)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1 + len(data.languages())  # a header, a line a language
    assert main(["models"]) == 0
    assert "gemma-3-270m" in capsys.readouterr().out


def test_console_script_reports_errors_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "xlspt.cli", "evaluate", "--prompt", str(tmp_path), "--data", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


def test_evaluate_several_prompts_in_one_pass(trained_run, tmp_path_factory, tiny_model_dirs, sib200_dir, capsys):
    second = tmp_path_factory.mktemp("run2")
    assert main(["run", "--preset", "study", "--model", str(tiny_model_dirs["gemma3"]), "--data", str(sib200_dir), "--langs", "eng_Latn",
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


# ---------------------------------------------------------------- --help, read as a user reads it


def _help(command: str, capsys, monkeypatch) -> str:
    """``xlspt COMMAND --help`` as printed (at a fixed width, so that wrapping does not depend on the terminal)."""
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as ended:
        main([command, "--help"])
    assert ended.value.code == 0
    return capsys.readouterr().out


def _sections(text: str) -> list[str]:
    """The titles of the help's sections (``options:``, then one per argument group), in order."""
    return [line[:-1] for line in text.splitlines() if line and not line[0].isspace() and line.endswith(":")]


def _entries(text: str) -> dict[str, str]:
    """Each option's help, by every flag it is listed under, with its wrapped lines joined."""
    entries, current = {}, None
    for line in text.splitlines():
        if line.startswith("  -"):  # an option's first line: its flags, then its help on the same line or the next
            flags, _, rest = line.strip().partition("  ")
            current = [rest.strip()]
            for name in flags.split(", "):
                entries[name.split()[0]] = current
        elif current is not None and line.startswith("    "):
            current.append(line.strip())
        else:
            current = None
    return {name: " ".join(" ".join(parts).split()) for name, parts in entries.items()}


_COMMANDS_WITH_CONFIG_FLAGS = ("run", "train", "label-words", "sweep", "evaluate", "predict", "self-train", "serve",
                               "languages")


def test_help_shows_a_default_of_zero_and_hides_none_and_false(capsys, monkeypatch):
    """``0 == False``: the flag builder once hid every default of 0 (``--seed``) with the None and False ones."""
    for command in ("run", "train", "label-words", "sweep"):
        entries = _entries(_help(command, capsys, monkeypatch))
        assert entries["--seed"].endswith("(default: 0)"), (command, entries["--seed"])
        assert entries["--reparam-hidden"].endswith("(default: 0)") and entries["--patience"].endswith("(default: 0)")
        assert entries["--lr"].endswith("(default: 0.005)")
        assert "(default:" not in entries["--data"]  # None: no default to show ($XLSPT_DATA, else the Hub)
    for command in _COMMANDS_WITH_CONFIG_FLAGS:
        text = " ".join(_help(command, capsys, monkeypatch).split())
        assert "(default: None)" not in text and "(default: False)" not in text, command


def test_sweep_help_groups_have_distinct_titles(capsys, monkeypatch):
    sections = _sections(_help("sweep", capsys, monkeypatch))
    assert len(sections) == len(set(sections)), sections
    overrides = [title for title in sections if "override the spec" in title]
    assert len(overrides) == 4, sections
    assert {title.split(":")[0] for title in overrides} == {"model and prompt", "data and training",
                                                             "ensembles and calibration", "method"}
    for command in _COMMANDS_WITH_CONFIG_FLAGS:
        sections = _sections(_help(command, capsys, monkeypatch))
        assert len(sections) == len(set(sections)), (command, sections)


def test_label_words_help_offers_no_calibration_flags(capsys, monkeypatch):
    """label-words ranks label words by dev accuracy without calibration: --prior/--no-prior would do nothing there."""
    entries = _entries(_help("label-words", capsys, monkeypatch))
    for name in ("--prior", "--no-prior", "--calibration", "--standardize", "--ensemble"):
        assert name not in entries, name
    assert "--prior" in _entries(_help("run", capsys, monkeypatch))  # where it means something, it stays
    with pytest.raises(SystemExit) as ended:
        main(["label-words", "--candidate", "default", "--no-prior"])
    assert ended.value.code == 2
    assert "unrecognized arguments: --no-prior" in capsys.readouterr().err


def test_device_help_says_recorded_only_where_the_command_records_results(capsys, monkeypatch):
    """serve, predict, train and self-train write no results; run, evaluate (--out) and sweep record the device."""
    for command in ("serve", "predict", "train", "self-train"):
        entries = _entries(_help(command, capsys, monkeypatch))
        assert entries["--device"].startswith("where the model runs") and "--threads" in entries, command
        assert "recorded" not in entries["--device"] and "recorded" not in entries["--threads"], command
    run = _entries(_help("run", capsys, monkeypatch))
    assert run["--device"].endswith("recorded in the run's record.json and summary.json")
    assert run["--threads"].endswith("recorded in the run's record.json and summary.json")
    evaluate = _entries(_help("evaluate", capsys, monkeypatch))
    assert evaluate["--device"].endswith("recorded in summary.json with --out")
    sweep = _entries(_help("sweep", capsys, monkeypatch))
    assert sweep["--device"].endswith("recorded in each run's record") and "--threads" not in sweep
