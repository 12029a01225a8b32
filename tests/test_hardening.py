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


def _tiny_spec(tmp_path: Path, model, data, langs: str = "[eng_Latn]", **settings) -> Path:
    """A sweep spec of tiny runs (2 examples per class) in ``tmp_path``; ``settings`` are further keys as YAML text."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"model: {model}\ndata: {data}\nlangs: {langs}\nshots: 2\n"
                    + "".join(f"{key}: {value}\n" for key, value in settings.items()))
    return spec


def _start_cli(*argv, **popen) -> subprocess.Popen:
    """``xlspt ARGV`` in a child process on one thread, its standard error piped as text."""
    popen.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen([sys.executable, "-m", "xlspt.cli", *map(str, argv)], text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, **popen)


def _default_sigint() -> None:
    """A process started in the background of a script inherits SIGINT ignored (POSIX), and Python then installs
    no KeyboardInterrupt handler; the signal tests give their child the terminal's default, as a user's shell does."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_a_nan_loss_stops_training_and_keeps_the_best_prompt(tmp_path, tiny_model_dirs, sib200_dir, capsys, diverging):
    out = tmp_path / "run"
    code = main(["train", "--preset", "study", "--model", str(tiny_model_dirs["gemma3"]), "--data", str(sib200_dir), "--epochs", "5",
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
    spec = _tiny_spec(tmp_path, tiny_model_dirs["gemma3"], sib200_dir, prompt_length=2, epochs=3, method="[prompt, probe]")
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
@pytest.mark.parametrize("command", ["evaluate", "sweep"])
def test_signals_during_evaluation_and_sweeps_end_cleanly(tmp_path, tiny_model_dirs, sib200_dir, sig, code, command):
    from xlspt.study import ResultStore

    model = str(tiny_model_dirs["gemma3"])
    prompt = tmp_path / "prompt"
    assert main(["train", "--preset", "study", "--model", model, "--data", str(sib200_dir), "--out", str(prompt), *TINY, "--epochs", "1"]) == 0
    out = tmp_path / "out"
    if command == "evaluate":
        argv = ["evaluate", "--prompt", str(prompt), "--data", str(sib200_dir), "--langs", "all", "--out", str(out)]
        started = "evaluated "
    else:
        spec = _tiny_spec(tmp_path, model, sib200_dir, prompt_length=2, epochs=50, seed="[0, 1, 2, 3, 4, 5]")
        argv = ["sweep", str(spec), "--store", str(out)]
        started = "training x6: epoch 2/"  # the six seeds train side by side, each on its own sample
    process = _start_cli(*argv, preexec_fn=_default_sigint)
    lines = []
    for line in process.stderr:
        lines.append(line)
        if started in line:
            break
    process.send_signal(sig)
    rest = process.communicate(timeout=120)[1]
    assert process.returncode == code, "".join(lines) + rest
    assert "Traceback" not in rest and not list(out.rglob("*.tmp"))
    if command == "evaluate":
        assert not out.exists() or not any(p.is_file() for p in out.iterdir())  # results are written at the end, whole
    else:
        store = ResultStore(out)
        assert all(r.status == "done" for r in store.records())  # an interrupted run is not recorded: it reruns


@pytest.mark.parametrize("ending,code,word", [("KeyboardInterrupt", 130, "interrupted"), ("Terminated", 143, "terminated")])
def test_a_signal_whose_exception_python_dropped_still_ends_the_command(tmp_path, tiny_model_dirs, sib200_dir,
                                                                         monkeypatch, capsys, ending, code, word):
    """Python drops a handler's exception raised inside a finalizer; the stop the signal asked for is then
    raised at the end of the language being evaluated, and nothing is written."""
    from xlspt import cli, evaluate, progress

    prompt = tmp_path / "prompt"
    assert main(["train", "--preset", "study", "--model", str(tiny_model_dirs["gemma3"]), "--data", str(sib200_dir), "--out", str(prompt),
                 *TINY, "--epochs", "1"]) == 0
    exception = KeyboardInterrupt if ending == "KeyboardInterrupt" else cli.Terminated
    monkeypatch.setattr(evaluate, "release_freed_memory", lambda: progress.request_stop(exception))
    out = tmp_path / "out"
    assert main(["evaluate", "--prompt", str(prompt), "--data", str(sib200_dir), "--langs", "eng_Latn,fra_Latn",
                 "--out", str(out)]) == code
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(word)
    assert not out.exists() or not any(out.iterdir())
    progress.checkpoint()  # the command's end cleared the request: later work is not stopped


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_during_training_end_cleanly(tmp_path, tiny_model_dirs, sib200_dir, sig, code):
    out = tmp_path / "run"
    process = _start_cli("train", "--model", tiny_model_dirs["gemma3"], "--data", sib200_dir, "--shots", "8",
                         "--epochs", "100000", "--prompt-length", "2", "--out", out, preexec_fn=_default_sigint)
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
                                       training=xlspt.TrainConfig(epochs=1), progress=False, recipe="study")
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


# ---------------------------------------------------------------- caches that a kill or a bad disk damaged


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_a_damaged_text_state_file_is_detected_and_recomputed(tiny_models, data, tmp_path, damage):
    import torch

    from xlspt.engine.store import TextStateStore
    from xlspt.engine import ReadoutConfig
    from xlspt.evaluate import label_logits

    loaded = tiny_models["gemma3"]
    verbalizer = xlspt.build_verbalizer(loaded)
    texts = data.split("fra_Latn", "test")["text"].tolist()[:20]
    prompts = [torch.empty(2, loaded.hidden_size).uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(s)) for s in (0, 1)]
    store = TextStateStore(loaded, tmp_path / "states")
    expected = label_logits(loaded, verbalizer, prompts, texts, ReadoutConfig(batch_size=8), store=store)
    files = sorted((tmp_path / "states").iterdir())
    target = files[0]
    raw = bytearray(target.read_bytes())
    if damage == "truncate":  # a writer killed half-way (were it not written aside and renamed)
        target.write_bytes(bytes(raw[: len(raw) // 2]))
    elif damage == "flip":  # a well-formed file whose numbers changed
        raw[-3] ^= 0x40
        target.write_bytes(bytes(raw))
    else:
        target.write_bytes(b"\x00" * 64)
    again = TextStateStore(loaded, tmp_path / "states")
    reread = label_logits(loaded, verbalizer, prompts, texts, ReadoutConfig(batch_size=8), store=again)
    assert (again.damaged, again.misses, again.hits) == (1, 1, len(files) - 1)
    torch.testing.assert_close(reread, expected, rtol=0, atol=0)
    assert again._read(target) is not None  # rewritten whole


def test_one_conversion_at_a_time_and_stale_staging_is_removed(tmp_path, monkeypatch):
    import threading

    from xlspt.models import gguf as conversion

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setenv("XLSPT_CACHE", str(tmp_path / "cache"))
    conversions = []

    def fake_convert(source, target, **kwargs):
        conversions.append(threading.get_ident())
        time.sleep(0.5)
        target.mkdir(parents=True, exist_ok=True)
        (target / "config.json").write_text("{}")
        return target

    monkeypatch.setattr(conversion, "convert_gguf", fake_convert)
    monkeypatch.setattr(conversion, "ensure_licence_notice", lambda *a, **k: None)
    models = tmp_path / "cache" / "models"
    models.mkdir(parents=True)
    results = []
    threads = [threading.Thread(target=lambda: results.append(conversion.converted_gguf_dir(gguf))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(conversions) == 1 and results[0] == results[1] and (results[0] / "config.json").is_file()
    target = results[0]
    (models / f".{target.name}.deadbeef").mkdir()  # what a process killed mid-conversion leaves
    (target / "config.json").unlink()
    conversion.converted_gguf_dir(gguf)
    assert not (models / f".{target.name}.deadbeef").exists() and len(conversions) == 2


def test_a_damaged_embedded_gguf_is_assembled_again(tmp_path):
    from xlspt.models.gguf import _assembled

    class Package:  # the embedded package's assemble(): verifies an existing file, writes a new one whole
        calls = []

        @staticmethod
        def assemble(path, overwrite=False):
            Package.calls.append(Path(path).name)
            path = Path(path)
            if path.exists() and not overwrite:
                if path.read_bytes() != b"GGUF-complete":
                    raise FileExistsError("unexpected sha256")
                return path
            path.write_bytes(b"GGUF-complete")
            return path

    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF-comp")  # a kill during an earlier assembly
    (tmp_path / ".model.gguf.999.part").write_bytes(b"GG")
    assert _assembled(Package, gguf) == gguf and gguf.read_bytes() == b"GGUF-complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.gguf"]
    assert _assembled(Package, gguf) == gguf and Package.calls[-1] == "model.gguf"  # verified, kept


def test_kill_9_during_a_sweep_leaves_a_store_that_resumes(tmp_path, tiny_model_dirs, sib200_dir):
    spec = _tiny_spec(tmp_path, tiny_model_dirs["gemma3"], sib200_dir, "[eng_Latn, fra_Latn]", prompt_length=2, epochs=2,
                      method="probe", seed="[0, 1, 2, 3]")
    store = tmp_path / "store"
    process = _start_cli("sweep", spec, "--store", store)
    for line in process.stderr:
        if "fitting the probe baseline" in line and "seed2" in line:
            break
    process.kill()  # SIGKILL: no handler runs
    process.wait(timeout=60)
    from xlspt.study import ResultStore, load_spec
    from xlspt.study.sweep import sweep_status
    from xlspt.study.runner import Session

    status = sweep_status(load_spec(spec), ResultStore(store), Session(progress=False)).as_json()
    assert status["running"] == 0 and status["failed"] == 0 and status["done"] + status["pending"] == 4
    assert main(["sweep", str(spec), "--store", str(store), "--quiet"]) == 0
    records = ResultStore(store).records()
    assert len(records) == 4 and {r.status for r in records} == {"done"}
    assert not [p for p in store.rglob("*.tmp")]


# ---------------------------------------------------------------- reproducibility and what each result records


def _run_in_process(tmp_path, name, model_dir, data_dir, *extra):
    out = tmp_path / name
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "xlspt.cli", "run", "--preset", "study", "--model", str(model_dir), "--data", str(data_dir),
                           "--langs", "eng_Latn,fra_Latn", "--shots", "4", "--epochs", "3", "--prompt-length", "3",
                           "--dtype", "float32", "--quiet", "--out", str(out), *extra], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return out


def test_same_config_and_seed_give_bit_identical_results_across_processes(tmp_path, tiny_model_dirs, sib200_dir):
    import torch
    from safetensors.torch import load_file

    first = _run_in_process(tmp_path, "a", tiny_model_dirs["llama"], sib200_dir)
    second = _run_in_process(tmp_path, "b", tiny_model_dirs["llama"], sib200_dir)
    assert (first / "prompt.safetensors").read_bytes() == (second / "prompt.safetensors").read_bytes()
    assert (first / "results.csv").read_bytes() == (second / "results.csv").read_bytes()
    records = [json.loads((d / "record.json").read_text()) for d in (first, second)]
    assert records[0]["data_checksum"] == records[1]["data_checksum"] and len(records[0]["data_checksum"]) == 64
    assert set(records[0]["versions"]) >= {"xlspt", "torch", "transformers"} and records[0]["device"]["device"] == "cpu"
    naive = _run_in_process(tmp_path, "naive", tiny_model_dirs["llama"], sib200_dir, "--engine", "naive")
    # The engines sum in a different order: the same predictions and metrics, prompts equal to a stated tolerance.
    assert (naive / "results.csv").read_bytes() == (first / "results.csv").read_bytes()
    torch.testing.assert_close(load_file(str(naive / "prompt.safetensors"))["prompt"],
                               load_file(str(first / "prompt.safetensors"))["prompt"], rtol=1e-4, atol=1e-5)


def test_report_warns_when_runs_differ_in_versions_device_or_data(tmp_path, tiny_model_dirs, sib200_dir, capsys):
    spec = _tiny_spec(tmp_path, tiny_model_dirs["gemma3"], sib200_dir, prompt_length=2, epochs=1, seed="[0, 1]")
    store = tmp_path / "store"
    assert main(["sweep", str(spec), "--store", str(store), "--quiet"]) == 0
    assert main(["report", "--store", str(store), "--out", str(tmp_path / "r1")]) == 0
    assert "warning:" not in capsys.readouterr().err
    path = sorted(store.glob("runs/*/record.json"))[0]
    record = json.loads(path.read_text())
    record["versions"]["torch"] = "0.0.1"
    record["data_checksum"] = "f" * 64
    path.write_text(json.dumps(record))
    assert main(["report", "--store", str(store), "--out", str(tmp_path / "r2")]) == 0
    err = capsys.readouterr().err
    assert "warning: the runs differ in torch version (0.0.1: 1 run" in err
    assert "the examples read for the same languages" in err
    assert "**Warning:** the runs differ in torch version" in (tmp_path / "r2" / "report.md").read_text()


# ---------------------------------------------------------------- two processes on the same caches


CONVERT_ONCE = """
import sys, time
from pathlib import Path
from xlspt.models import gguf as conversion

def fake_convert(gguf, target, **kwargs):
    with open(sys.argv[2], "a") as log:
        log.write("converted\\n")
    time.sleep(1.0)
    staging = target.with_name("." + target.name + ".staging")
    staging.mkdir(parents=True, exist_ok=True)
    (staging / "config.json").write_text("{}")
    staging.rename(target)
    return target

conversion.convert_gguf = fake_convert
conversion.ensure_licence_notice = lambda *a, **k: None
print(conversion.converted_gguf_dir(Path(sys.argv[1])))
"""


def test_two_processes_on_a_fresh_cache_convert_the_model_once(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    log = tmp_path / "conversions.log"
    env = {**os.environ, "XLSPT_CACHE": str(tmp_path / "cache")}
    processes = [subprocess.Popen([sys.executable, "-c", CONVERT_ONCE, str(gguf), str(log)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert outputs[0][0] == outputs[1][0] and log.read_text() == "converted\n"
    assert any("Waiting for another process" in err for _, err in outputs)


def test_two_sweep_workers_on_one_store_run_each_run_once(tmp_path, tiny_model_dirs, sib200_dir):
    from xlspt.study import ResultStore

    spec = _tiny_spec(tmp_path, tiny_model_dirs["gemma3"], sib200_dir, "[eng_Latn, fra_Latn]", prompt_length="[1, 2]",
                      epochs=2, seed="[0, 1, 2]")
    store = tmp_path / "store"
    workers = [_start_cli("sweep", spec, "--store", store, "--quiet", stdout=subprocess.PIPE) for _ in range(2)]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    records = ResultStore(store).records()
    assert len(records) == 6 and {r.status for r in records} == {"done"}
    finished = "".join(err for _, err in outputs).count("mean accuracy")
    assert finished == 6  # each run once, between the two workers


def test_kill_9_during_a_run_leaves_only_whole_files(tmp_path, tiny_model_dirs, sib200_dir):
    out = tmp_path / "run"
    process = _start_cli("run", "--model", tiny_model_dirs["gemma3"], "--data", sib200_dir, "--langs", "all", "--shots", "2",
                         "--epochs", "2", "--prompt-length", "2", "--out", out)
    for line in process.stderr:
        if line.startswith("evaluated "):  # the prompt is saved; results are being computed
            break
    process.kill()
    process.wait(timeout=60)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["prompt.json", "prompt.safetensors"]  # no record: the run did not finish, and says so
    xlspt.artifact.PromptArtifact.load(out)  # what is there is whole (its checksum holds)
    assert main(["run", "--preset", "study", "--model", str(tiny_model_dirs["gemma3"]), "--data", str(sib200_dir), "--langs", "eng_Latn",
                 "--out", str(out), *TINY]) == 2  # not silently mixed with a new run's files


def test_the_python_api_hands_back_the_best_prompt_before_a_divergence(tiny_models, data, tmp_path, diverging):
    """The runner saves it into the run's folder (above); the API gives it to the caller, who may save it."""
    with pytest.raises(xlspt.train.TrainingDiverged) as raised:
        xlspt.PromptClassifier.train(tiny_models["gemma3"], data, shots=2, recipe="study", progress=False,
                                     training=xlspt.TrainConfig(epochs=5))
    kept = raised.value.kept
    assert kept is not None and "nan" in kept.metadata.diverged and kept.metadata.training.best_epoch == 1
    kept.save(tmp_path / "kept")
    assert xlspt.PromptClassifier.load(tmp_path / "kept", tiny_models["gemma3"]).predict(["The team won."])[0] in xlspt.CATEGORIES
