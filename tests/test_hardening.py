"""Faults: a diverging loss, an unexpected exception, and real signals sent to a running command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import xlspt
from xlspt.cli import main

TINY = ["--shots", "2", "--prompt-length", "2", "--quiet"]


@pytest.fixture
def diverging(monkeypatch):
    """The training loss turns NaN from the third training step on (epoch 2 with 14 examples and batch 8)."""
    from xlspt import train

    original = train._PromptReadouts.losses
    calls = {"train": 0}

    def losses(self, verbalizer, rows, labels, prompts):
        out = original(self, verbalizer, rows, labels, prompts)
        if out.requires_grad:  # training steps; validation runs under no_grad
            calls["train"] += 1
            if calls["train"] >= 3:
                return out * float("nan")
        return out

    monkeypatch.setattr(train._PromptReadouts, "losses", losses)
    return calls


def test_a_nan_loss_stops_training_and_keeps_the_best_prompt(tmp_path, tiny_model_dirs, sib200_dir, capsys, diverging):
    out = tmp_path / "run"
    code = main(["train", "--model", str(tiny_model_dirs["gemma3"]), "--data", str(sib200_dir), "--epochs", "5",
                 "--out", str(out), *TINY])
    assert code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err
    assert "the training loss became nan at epoch 2" in errors[0] and f"is kept in {out}" in errors[0]
    meta = json.loads((out / "prompt.json").read_text())
    assert meta["best_epoch"] == 1 and "nan" in meta["diverged"]
    assert set(meta["history"][0]) >= {"grad_norm", "grad_norm_max"} and meta["history"][0]["grad_norm"] > 0
    xlspt.PromptClassifier.load(out, str(tiny_model_dirs["gemma3"]))  # the kept prompt loads


def test_a_sweep_records_a_diverged_run_as_failed_and_goes_on(tmp_path, tiny_model_dirs, sib200_dir, diverging):
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"model: {tiny_model_dirs['gemma3']}\ndata: {sib200_dir}\nlangs: [eng_Latn]\nshots: 2\n"
                    "prompt_length: 2\nepochs: 3\nmethod: [prompt, probe]\n")
    assert main(["sweep", str(spec), "--store", str(tmp_path / "store"), "--quiet"]) == 0
    records = xlspt.study.ResultStore(tmp_path / "store").records()
    status = {r.config.get("method", "prompt"): r for r in records}
    assert status["prompt"].status == "failed" and "became nan" in status["prompt"].error
    assert status["probe"].status == "done"


def test_an_unexpected_exception_is_one_line_unless_debugging(monkeypatch, capsys):
    from xlspt import cli

    def broken(args):
        raise RuntimeError("something inside\nwent wrong")

    monkeypatch.setitem(cli.COMMANDS, "models", broken)
    assert main(["models"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: unexpected RuntimeError: something inside (a bug: rerun with --debug or XLSPT_DEBUG=1 "
                   "for the traceback, and report it)"]
    with pytest.raises(RuntimeError):
        main(["models", "--debug"])
    monkeypatch.setenv("XLSPT_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(["models"])


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_during_training_end_cleanly(tmp_path, tiny_model_dirs, sib200_dir, sig, code):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "xlspt.cli", "train", "--model", str(tiny_model_dirs["gemma3"]), "--data", str(sib200_dir),
         "--shots", "8", "--epochs", "100000", "--prompt-length", "2", "--out", str(out)],
        stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    for line in process.stderr:  # wait until training has begun (a line per epoch in a pipe)
        lines.append(line)
        if "epoch 2/" in line:
            break
    process.send_signal(sig)
    rest = process.communicate(timeout=120)[1]
    assert process.returncode == code, "".join(lines) + rest
    assert rest.strip().splitlines()[-1].startswith("interrupted" if sig == signal.SIGINT else "terminated")
    assert "Traceback" not in rest
    assert not out.exists() or not any(out.iterdir())  # nothing half-written, no prompt of an unfinished training


# ---------------------------------------------------------------- safe artifacts


@pytest.fixture
def saved_prompt(tmp_path, tiny_models, data):
    clf = xlspt.PromptClassifier.train(tiny_models["gemma3"], data, shots=2, prompt=xlspt.PromptConfig(length=2),
                                       training=xlspt.TrainConfig(epochs=1), progress=False)
    clf.save(tmp_path / "p")
    return tmp_path / "p"


def test_the_sidecar_holds_the_prompt_files_checksum_and_format(saved_prompt):
    from xlspt.artifact import FORMAT_VERSION, PromptArtifact, sha256_file

    meta = json.loads((saved_prompt / "prompt.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION and meta["prompt_sha256"] == sha256_file(saved_prompt / "prompt.safetensors")
    data = bytearray((saved_prompt / "prompt.safetensors").read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last tensor value: still a readable file
    (saved_prompt / "prompt.safetensors").write_bytes(bytes(data))
    with pytest.raises(xlspt.XlsptError, match="does not match the checksum"):
        PromptArtifact.load(saved_prompt)


def test_newer_format_versions(saved_prompt):
    from xlspt.artifact import FORMAT_VERSION, FormatWarning, PromptArtifact

    major, minor = (int(x) for x in FORMAT_VERSION.split("."))
    meta = json.loads((saved_prompt / "prompt.json").read_text())
    (saved_prompt / "prompt.json").write_text(json.dumps({**meta, "format_version": f"{major + 1}.0"}))
    with pytest.raises(xlspt.XlsptError, match="newer than this xlspt reads"):
        PromptArtifact.load(saved_prompt)
    (saved_prompt / "prompt.json").write_text(json.dumps({**meta, "format_version": f"{major}.{minor + 1}", "future": 1}))
    with pytest.warns(FormatWarning, match="ignoring its unknown entries future"):
        PromptArtifact.load(saved_prompt)


def test_nothing_is_pickled_and_torch_never_loads_untrusted_pickles():
    source = Path(xlspt.__file__).parent
    text = "\n".join(p.read_text() for p in source.rglob("*.py"))
    assert "import pickle" not in text and "torch.load(" not in text
    loading = (source / "models" / "loading.py").read_text()  # every from_pretrained there passes the user's choice
    assert loading.count("from_pretrained(source") == loading.count("trust_remote_code=trust_remote_code)")


def test_remote_code_runs_only_when_asked(monkeypatch, tiny_model_dirs):
    import transformers

    seen = []
    original = transformers.AutoConfig.from_pretrained

    def spy(*args, **kwargs):
        seen.append(kwargs.get("trust_remote_code"))
        return original(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", spy)
    xlspt.load_model(str(tiny_model_dirs["gemma3"]))
    assert seen and not any(seen)
    seen.clear()
    xlspt.load_model(str(tiny_model_dirs["gemma3"]), trust_remote_code=True)
    assert seen and all(seen)
    assert xlspt.study.RunConfig().trust_remote_code is False
    assert "trust_remote_code" not in xlspt.study.RunConfig().canonical(dtype="float32")
