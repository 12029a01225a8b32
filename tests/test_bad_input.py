"""The bad-input matrix: every command, for each bad input, ends in one ``error:`` line naming the problem and
the fix, a non-zero exit, no traceback and no files in its output folder; and random malformed inputs
(TSV rows, sweep specs, prompt files) never end in anything else."""

from __future__ import annotations

import json
import shutil
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import xlspt
from xlspt.cli import main

FAST = ["--shots", "2", "--epochs", "1", "--prompt-length", "2", "--quiet"]


@pytest.fixture(scope="module")
def world(tmp_path_factory, sib200_dir, tiny_model_dirs):
    """Good and broken inputs: data folders, prompts for this and for another model, specs, files."""
    root = tmp_path_factory.mktemp("bad-input")
    good = root / "data"
    for lang in ("eng_Latn", "fra_Latn"):
        shutil.copytree(sib200_dir / lang, good / lang)
    (root / "empty").mkdir()

    def broken(name: str, damage) -> Path:
        folder = root / name
        shutil.copytree(good, folder)
        damage(folder / "fra_Latn" / "test.tsv")
        return folder

    broken("no-split", lambda f: f.unlink())
    broken("no-columns", lambda f: f.write_text("id\tlabel\tsentence\n1\tsports\thi\n"))
    broken("header-only", lambda f: f.write_text("index_id\tcategory\ttext\n"))
    broken("empty-text", lambda f: f.write_text("index_id\tcategory\ttext\n1\tsports\t \n"))
    broken("not-utf8", lambda f: f.write_bytes(b"index_id\tcategory\ttext\n1\tsports\t\xff\xfe\n"))
    broken("category", lambda f: f.write_text("index_id\tcategory\ttext\n1\tcooking\thi\n"))
    prompt = root / "prompt"
    assert main(["train", "--preset", "study", "--model", str(tiny_model_dirs["gemma3"]), "--data", str(good), "--out", str(prompt), *FAST]) == 0
    (root / "corrupt").mkdir()
    (root / "corrupt" / "prompt.safetensors").write_bytes(b"\x00garbage" * 10)
    shutil.copy(prompt / "prompt.json", root / "corrupt" / "prompt.json")
    (root / "empty-prompt").mkdir()
    (root / "empty-prompt" / "prompt.safetensors").write_bytes(b"")
    shutil.copy(prompt / "prompt.json", root / "empty-prompt" / "prompt.json")
    other_words = json.loads((prompt / "prompt.json").read_text())
    other_words["label_token_ids"] = [1, 2, 3, 4, 5, 6, 7]
    (root / "other-words").mkdir()
    shutil.copy(prompt / "prompt.safetensors", root / "other-words" / "prompt.safetensors")
    (root / "other-words" / "prompt.json").write_text(json.dumps(other_words))
    (root / "bad.gguf").write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 40)
    truncated = root / "truncated-model"
    shutil.copytree(tiny_model_dirs["gemma3"], truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    specs = {
        "unknown-key": "shots: 8\nflavour: [1, 2]\n",
        "misspelled": "prompt_lenght: [1, 4]\n",
        "empty-list": "shots: []\n",
        "wrong-type": "shots: eight\n",
        "broken-yaml": "shots: [8, 32\nseed: 0\n",
    }
    for name, text in specs.items():
        (root / f"{name}.yaml").write_text(text)
    (root / "texts.txt").write_text("\n\n")
    return root


def _cases():
    model = "{tiny}"
    run = ["run", "--model", model, "--data", "{root}/data", "--langs", "eng_Latn", "--preset", "study", *FAST]
    evaluate = ["evaluate", "--data", "{root}/data", "--langs", "eng_Latn", "--quiet"]
    return [
        # data
        ("run-no-data", ["run", "--preset", "study", "--data", "{root}/nowhere", *FAST], "does not exist"),
        ("run-empty-data", ["run", "--preset", "study", "--data", "{root}/empty", *FAST], "neither language folders"),
        ("run-unknown-lang", run[:-len(FAST)] + ["--langs", "eng_Latn,fra_Lant", *FAST], "did you mean fra_Latn"),
        ("run-missing-split", [*run[:4], "{root}/no-split", "--langs", "fra_Latn", *FAST], "missing split"),
        ("run-missing-columns", [*run[:4], "{root}/no-columns", "--langs", "fra_Latn", *FAST], "lacks the column"),
        ("run-header-only", [*run[:4], "{root}/header-only", "--langs", "fra_Latn", *FAST], "has no rows"),
        ("run-empty-text", [*run[:4], "{root}/empty-text", "--langs", "fra_Latn", *FAST], "empty text"),
        ("run-not-utf8", [*run[:4], "{root}/not-utf8", "--langs", "fra_Latn", *FAST], "not a valid TSV file"),
        ("run-category", [*run[:4], "{root}/category", "--langs", "fra_Latn", *FAST], "unknown category 'cooking'"),
        # settings
        ("run-shots-0", [*run, "--shots", "0"], "--shots: must be at least 1"),
        ("run-shots-too-many", [*run, "--shots", "59"], "use --shots 58 or fewer"),
        ("run-prompt-0", [*run, "--prompt-length", "0"], "--prompt-length: must be at least 1"),
        ("run-prompt-negative", [*run, "--prompt-length", "-3"], "--prompt-length: must be at least 1"),
        ("run-prompt-too-long", [*run, "--prompt-length", "200"], "leaves no room for text within max_length 128"),
        ("run-epochs", [*run, "--epochs", "0"], "--epochs: must be at least 1"),
        ("run-lr", [*run, "--lr", "-0.1"], "--lr: must be positive"),
        ("run-batch", [*run, "--batch-size", "0"], "--batch-size: must be at least 1"),
        ("run-label-word", [*run, "--label-words", "sports=team sports"], "not a single token"),
        # models
        ("run-unknown-model", [*run[:1], "--model", "no-such-model-anywhere", *run[3:]], "no-such-model-anywhere"),
        ("run-corrupt-gguf", [*run[:1], "--model", "{root}/bad.gguf", *run[3:]], "GGUF"),
        ("run-truncated-weights", [*run[:1], "--model", "{root}/truncated-model", *run[3:]], "cannot load model"),
        ("train-prompt-too-long", ["train", "--preset", "study", "--model", model, "--data", "{root}/data", "--prompt-length", "127", "--quiet"],
         "leaves no room"),
        # prompts
        ("evaluate-corrupt", [*evaluate, "--prompt", "{root}/corrupt"], "not a readable safetensors file"),
        ("evaluate-empty", [*evaluate, "--prompt", "{root}/empty-prompt"], "not a readable safetensors file"),
        ("evaluate-missing", [*evaluate, "--prompt", "{root}/nothing-here"], "no prompt folder or Hub repository"),
        ("evaluate-other-model", [*evaluate, "--prompt", "{root}/prompt", "--model", "{xglm}"], "--model"),
        ("evaluate-other-words", [*evaluate, "--prompt", "{root}/other-words", "--model", model], "label words"),
        ("evaluate-unknown-lang", ["evaluate", "--data", "{root}/data", "--langs", "xx_Latn", "--prompt", "{root}/prompt"],
         "unknown language 'xx_Latn'"),
        ("predict-no-text", ["predict", "--prompt", "{root}/prompt", "--file", "{root}/texts.txt"], "no text to classify"),
        # sweeps and reports
        *[(f"sweep-{name}", ["sweep", "{root}/" + name + ".yaml", "--store", "{out}"], message) for name, message in (
            ("unknown-key", "flavour"), ("misspelled", "did you mean prompt_length"), ("empty-list", "empty"),
            ("wrong-type", "whole number"), ("broken-yaml", "YAML"))],
        ("report-no-store", ["report", "--store", "{root}/nowhere", "--out", "{out}"], "does not exist"),
        ("report-empty-store", ["report", "--store", "{root}/empty", "--out", "{out}"], "not a result store"),
    ]


@pytest.mark.parametrize("name,args,message", _cases(), ids=[c[0] for c in _cases()])
def test_bad_input_is_one_line(world, tiny_model_dirs, tmp_path, capsys, monkeypatch, name, args, message):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "out"
    values = {"root": str(world), "tiny": str(tiny_model_dirs["gemma3"]), "xglm": str(tiny_model_dirs["xglm"]), "out": str(out)}
    argv = [a.format(**values) for a in args]
    if argv[0] in ("run", "train", "evaluate") and "--out" not in argv:
        argv += ["--out", str(out)]
    code = main(argv)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert len(errors) == 1 and "Traceback" not in err, err
    assert message in errors[0], errors[0]
    written = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    if argv[0] == "sweep":  # a refused spec leaves nothing but the store's empty folders
        written = [p for p in written if p.suffix != ".lock"]
    assert written == []


# ---------------------------------------------------------------- property-based: random malformed input

_cell = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_row = st.lists(_cell, min_size=0, max_size=5).map(lambda cells: "\t".join(cells))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.sampled_from(["index_id\tcategory\ttext", "text\tlabel", "a\tb", ""]), rows=st.lists(_row, max_size=6),
       raw=st.binary(max_size=30))
@example(header="", rows=['"0', '0"'], raw=b"")  # a quoted header name holding a line break (found on 2026-12-08)
def test_random_tsv_rows_are_read_or_refused_in_one_line(tmp_path_factory, header, rows, raw):
    folder = tmp_path_factory.mktemp("tsv")
    (folder / "eng_Latn").mkdir()
    path = folder / "eng_Latn" / "train.tsv"
    path.write_bytes((header + "\n" + "\n".join(rows)).encode("utf-8", "surrogatepass") + raw)
    data = xlspt.TaskData.resolve(folder)
    try:
        frame = data.split("eng_Latn", "train")
        data.labels("eng_Latn")
    except xlspt.XlsptError as exc:
        assert "\n" not in str(exc)
        return
    assert list(frame.columns) == ["index_id", "label", "text"] and (frame["text"].str.strip() != "").all()


_scalar = st.one_of(st.integers(-5, 100), st.floats(allow_nan=True), st.text(string.printable, max_size=8), st.booleans(), st.none())
_value = st.one_of(_scalar, st.lists(_scalar, max_size=3), st.dictionaries(st.text(string.ascii_lowercase, max_size=4), _scalar, max_size=2))
_keys = st.sampled_from(["shots", "seed", "prompt_length", "lr", "model", "langs", "freeze", "calibration", "ensemble",
                         "label_words", "method", "text_column", "flavour", "prompt_lenght", "epochs"])


@settings(max_examples=80, deadline=None)
@given(spec=st.one_of(st.dictionaries(_keys, _value, max_size=4), st.lists(_scalar, max_size=3), _scalar),
       garbage=st.text(string.printable, max_size=20))
def test_random_sweep_specs_load_or_are_refused_in_one_line(tmp_path_factory, spec, garbage):
    import yaml

    from xlspt.study import load_spec

    folder = tmp_path_factory.mktemp("spec")
    for text in (yaml.safe_dump(spec), garbage):
        path = folder / "spec.yaml"
        path.write_text(text)
        try:
            load_spec(path)
        except xlspt.XlsptError as exc:
            assert "\n" not in str(exc).strip()


@settings(max_examples=60, deadline=None)
@given(tensor=st.binary(max_size=200), sidecar=st.one_of(st.binary(max_size=80), st.dictionaries(
    st.sampled_from(["model", "model_signature", "label_words", "prompt_config", "format_version", "ensemble", "labels"]),
    st.one_of(_scalar, st.lists(_scalar, max_size=2), st.dictionaries(st.text(max_size=3), _scalar, max_size=2)), max_size=6)))
def test_random_prompt_files_are_refused_in_one_line(tmp_path_factory, tensor, sidecar):
    folder = tmp_path_factory.mktemp("prompt")
    (folder / "prompt.safetensors").write_bytes(tensor)
    (folder / "prompt.json").write_bytes(sidecar if isinstance(sidecar, bytes) else json.dumps(sidecar).encode())
    with pytest.raises(xlspt.XlsptError) as caught:
        xlspt.artifact.PromptArtifact.load(folder)
    assert "\n" not in str(caught.value)
