"""The study machinery on tiny models: run config, sweep specs, the store, joint training, freezing off, Ray."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import xlspt
from xlspt.cli import main
from xlspt.data import sample_few_shot
from xlspt.errors import XlsptError
from xlspt.study import ResultStore, RunConfig, RunStatus, expand, load_spec
from xlspt.train import TrainConfig, train_prompt, train_prompts

DATA = "0" * 64  # a data checksum standing for the data: ids hash it, never the folder

# ---------------------------------------------------------------- run config


def test_run_id_covers_what_changes_a_result_and_resolves_auto():
    base = RunConfig(dtype="float32", langs="eng_Latn")
    assert base.run_id(data_checksum=DATA) == RunConfig(dtype="float32", langs="eng_Latn").run_id(data_checksum=DATA)
    assert base.run_id(data_checksum=DATA) != base.replace(seed=1).run_id(data_checksum=DATA)
    assert base.run_id(data_checksum=DATA) != base.replace(prompt_length=5).run_id(data_checksum=DATA)
    # the model learning rate means nothing with a frozen model; it does without
    assert base.run_id(data_checksum=DATA) == base.replace(model_lr=3e-5).run_id(data_checksum=DATA)
    assert base.replace(freeze=False).run_id(data_checksum=DATA) != base.replace(freeze=False, model_lr=3e-5).run_id(data_checksum=DATA)
    auto = RunConfig(dtype="auto", langs="eng_Latn")
    assert auto.canonical()["dtype"] in ("float32", "bfloat16")
    assert auto.run_id(data_checksum=DATA) == auto.replace(dtype=auto.canonical()["dtype"]).run_id(data_checksum=DATA)
    assert auto.canonical()["engine"] == "cached" and auto.replace(freeze=False).canonical()["engine"] == "naive"


@pytest.mark.parametrize(
    "values,field",
    [
        ({"prompt_length": 0}, "prompt_length"),
        ({"shots": "eight"}, "shots"),
        ({"freeze": "yes"}, "freeze"),
        ({"dtype": "float16"}, "dtype"),
        ({"prompt_length": 200}, "prompt_length"),  # leaves no room for text in max_length 128
        ({"model_lr": "fast"}, "model_lr"),
        ({"promt_length": 4}, "promt_length"),
    ],
)
def test_bad_config_values_name_their_field(values, field):
    with pytest.raises(XlsptError) as info:
        RunConfig.from_mapping(values)
    assert info.value.field == field


def test_command_line_names_the_flag_of_a_bad_field(capsys):
    assert main(["run", "--preset", "study", "--prompt-length", "0", "--langs", "eng_Latn"]) == 2
    assert capsys.readouterr().err.strip() == "error: --prompt-length: must be at least 1 (got 0)"
    assert main(["run", "--preset", "study", "--prompt-length", "300", "--langs", "eng_Latn"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --prompt-length: 300 leaves no room") and "Traceback" not in err


# ---------------------------------------------------------------- specs


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_spec_expands_to_the_product_of_its_lists(tmp_path):
    spec = load_spec(_write(tmp_path / "s.yaml", "shots: [8, 32]\nprompt_length: [1, 4, 16]\nreparam_hidden: [0, 200]\n"
                                                  "freeze: [true, false]\nseed: [0, 1, 2, 3]\nlangs: [eng_Latn, fra_Latn]\n"))
    assert len(spec.runs) == 2 * 3 * 2 * 2 * 4
    assert set(spec.axes) == {"shots", "prompt_length", "reparam_hidden", "freeze", "seed"}
    assert {run.langs for run in spec.runs} == {("eng_Latn", "fra_Latn")}  # a list of languages is one value
    assert len({run.run_id(dtype="float32", data_checksum=DATA) for run in spec.runs}) == len(spec.runs)


@pytest.mark.parametrize(
    "text,message",
    [
        ("shots: 8\npromt_length: [1, 4]\n", "line 2: unknown key 'promt_length' (did you mean prompt_length?)"),
        ("shots: []\n", "line 1: shots is an empty list"),
        ("seed: 0\nshots: [8, eight]\n", "line 2: shots: must be a whole number (got 'eight')"),
        ("freeze: [true, maybe]\n", "line 1: freeze: must be true or false"),
        ("shots: [8, 32\nseed: 1\n", "broken YAML"),
        ("- shots\n- seed\n", "a sweep spec is a YAML mapping"),
        ("dtype: half\n", "dtype: must be one of auto, float32, bfloat16"),
    ],
)
def test_bad_specs_are_refused_before_anything_runs(tmp_path, capsys, text, message):
    spec = _write(tmp_path / "bad.yaml", text)
    store = tmp_path / "store"
    assert main(["sweep", str(spec), "--store", str(store)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (store / "runs").exists() or not any((store / "runs").iterdir())


def test_presets_expand():
    from xlspt.study import preset_path

    smoke = load_spec(preset_path("smoke"))
    assert {r.freeze for r in smoke.runs} == {True, False} and len({r.prompt_length for r in smoke.runs}) == 2
    paper = load_spec(preset_path("paper"))
    assert {r.model for r in paper.runs} >= {"facebook/xglm-564M", "bigscience/bloom-1b7"}
    assert {r.special_tokens.value for r in paper.runs} == {"reference"}


# ---------------------------------------------------------------- joint training


@pytest.mark.parametrize("family", ["gemma3", "xglm", "bloom", "llama"])
def test_prompts_trained_together_equal_prompts_trained_alone(tiny_models, data, family):
    """Mixed lengths and reparameterization, with texts truncated differently per prompt length."""
    loaded = tiny_models[family]
    verbalizer = xlspt.build_verbalizer(loaded)
    examples = sample_few_shot(data, "eng_Latn", 2, seed=3)
    configs = [xlspt.PromptConfig(length=1), xlspt.PromptConfig(length=1, reparam_hidden=8),
               xlspt.PromptConfig(length=4), xlspt.PromptConfig(length=4, reparam_hidden=8)]
    training = [TrainConfig(epochs=3, batch_size=4, seed=3, max_length=20, lr=lr) for lr in (5e-3, 5e-3, 1e-2, 5e-3)]
    together = train_prompts(loaded, verbalizer, examples, configs, training, progress=False)
    for config, train_config, joint in zip(configs, training, together):
        alone = train_prompt(loaded, verbalizer, examples, config, train_config, progress=False)
        torch.testing.assert_close(joint.prompt.export(), alone.prompt.export(), rtol=1e-4, atol=1e-5)
        assert joint.best_epoch == alone.best_epoch
        for a, b in zip(joint.history, alone.history):
            assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)


@pytest.mark.parametrize("family", ["gemma3", "bloom"])
@pytest.mark.parametrize("loss", ["vocabulary", "label-words"])
def test_members_on_their_own_samples_trained_side_by_side_equal_members_trained_alone(tiny_models, data, family, loss):
    """An ensemble's members, each on its own sample and seed (two sharing one), train in one pass per step."""
    loaded = tiny_models[family]
    verbalizer = xlspt.build_verbalizer(loaded)
    samples = {seed: sample_few_shot(data, "eng_Latn", 2, seed=seed) for seed in (0, 1, 2)}
    seeds = [(0, 0), (1, 1), (2, 2), (2, 5)]  # (sample seed, training seed)
    config = xlspt.PromptConfig(length=3)
    training = [TrainConfig(epochs=3, batch_size=4, seed=seed, max_length=20, loss=loss) for _, seed in seeds]
    together = train_prompts(loaded, verbalizer, [samples[s] for s, _ in seeds], [config] * 4, training, progress=False)
    for (sample_seed, _), train_config, joint in zip(seeds, training, together):
        alone = train_prompt(loaded, verbalizer, samples[sample_seed], config, train_config, progress=False)
        torch.testing.assert_close(joint.prompt.export(), alone.prompt.export(), rtol=1e-4, atol=1e-5)
        assert joint.best_epoch == alone.best_epoch
        for a, b in zip(joint.history, alone.history):
            assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)


def test_members_that_stop_early_keep_their_best_epoch_and_the_others_train_on(tiny_models, data):
    """With patience 1 a member stops at its first epoch without a better validation loss; its loss curve up to
    there is the curve it has without patience, and the members that go on are those they would be alone."""
    loaded = tiny_models["gemma3"]
    verbalizer = xlspt.build_verbalizer(loaded)
    samples = [sample_few_shot(data, "eng_Latn", 2, seed=seed) for seed in range(4)]
    config = xlspt.PromptConfig(length=2)

    def train(patience):
        training = [TrainConfig(epochs=8, batch_size=4, seed=seed, max_length=20, lr=0.2, loss="label-words",
                                patience=patience)
                    for seed in range(4)]
        return training, train_prompts(loaded, verbalizer, samples, [config] * 4, training, progress=False)

    _, full = train(0)
    training, stopping = train(1)
    stopped = 0
    for sample, train_config, patient, unbounded in zip(samples, training, stopping, full):
        losses = [h["val_loss"] for h in unbounded.history]
        first_stall = next((e for e in range(2, 9) if losses[e - 1] >= min(losses[: e - 1])), 8)
        assert [h["epoch"] for h in patient.history] == list(range(1, first_stall + 1))
        assert [h["val_loss"] for h in patient.history] == pytest.approx(losses[:first_stall], rel=1e-5)
        assert patient.best_epoch == 1 + min(range(first_stall), key=losses.__getitem__)
        stopped += first_stall < 8
        alone = train_prompt(loaded, verbalizer, sample, config, train_config, progress=False)
        torch.testing.assert_close(patient.prompt.export(), alone.prompt.export(), rtol=1e-4, atol=1e-5)
    assert 0 < stopped < 4  # some stopped early while others trained on


def test_an_ensemble_trains_its_members_in_one_group(tiny, data, monkeypatch):
    from xlspt.classifiers import training

    calls = []
    monkeypatch.setattr(training, "train_prompts", lambda *args, **kw: calls.append(len(args[3])) or train_prompts(*args, **kw))
    clf = xlspt.PromptClassifier.train(tiny, data, shots=2, prompt=xlspt.PromptConfig(length=2), ensemble=3,
                                       training=TrainConfig(epochs=1, batch_size=4), progress=False, recipe="study")
    assert calls == [3] and [m.data.sampling_seed for m in clf.metadata.members] == [0, 1, 2]
    with pytest.raises(ValueError, match="same numbers of training and validation examples"):
        train_prompts(tiny, clf.verbalizer, [sample_few_shot(data, "eng_Latn", 2, seed=0),
                                             sample_few_shot(data, "eng_Latn", 3, seed=1)],
                      [xlspt.PromptConfig(length=2)] * 2, [TrainConfig(epochs=1, seed=s) for s in (0, 1)], progress=False)


def test_a_diverging_prompt_fails_alone(tiny_models, data):
    loaded = tiny_models["gemma3"]
    verbalizer = xlspt.build_verbalizer(loaded)
    examples = sample_few_shot(data, "eng_Latn", 2, seed=0)
    configs = [xlspt.PromptConfig(length=2)] * 2
    training = [TrainConfig(epochs=2, batch_size=4, lr=5e-3), TrainConfig(epochs=2, batch_size=4, lr=1e30, warmup_ratio=0)]
    good, bad = train_prompts(loaded, verbalizer, examples, configs, training, progress=False)
    assert isinstance(bad, xlspt.train.TrainingDiverged) and "lower the learning rate" in str(bad)
    alone = train_prompt(loaded, verbalizer, examples, configs[0], training[0], progress=False)
    torch.testing.assert_close(good.prompt.export(), alone.prompt.export(), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- freezing off


def test_training_the_model_uses_float32_master_weights_and_restores_the_model(tiny_model_dirs, sib200_dir, tmp_path):
    from xlspt.study.runner import Session, run_group, plan

    session = Session(progress=False)
    config = RunConfig(model=str(tiny_model_dirs["llama"]), dtype="bfloat16", data=str(sib200_dir), shots=2, epochs=2,
                       prompt_length=2, freeze=False, model_lr=1e-3, langs="eng_Latn")
    loaded = session.model(config)
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    seen_dtypes = []
    original_adamw = torch.optim.AdamW

    class RecordingAdamW(original_adamw):
        def __init__(self, groups, **kwargs):
            seen_dtypes.extend(p.dtype for g in groups for p in g["params"])
            super().__init__(groups, **kwargs)

    records = []
    torch.optim.AdamW = RecordingAdamW
    try:
        run_group([plan(config, session, tmp_path / "run")], session, records.append)
    finally:
        torch.optim.AdamW = original_adamw
    [record] = records
    assert record.status == "done", record.error
    assert set(seen_dtypes) == {torch.float32}  # the optimizer never steps bfloat16 weights
    assert record.trainable_parameters > sum(p.numel() for p in loaded.model.parameters())
    assert "not saved" in record.notes[0]
    after = loaded.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # later runs get the original model


def test_training_the_model_changes_what_it_predicts_and_can_save_it(tiny_model_dirs, sib200_dir, tmp_path):
    from xlspt.study.runner import Session, plan, run_group

    session = Session(progress=False)
    base = RunConfig(model=str(tiny_model_dirs["gemma3"]), dtype="float32", data=str(sib200_dir), shots=2, epochs=2,
                     prompt_length=2, langs="eng_Latn", lr=5e-2)
    records = []
    run_group([plan(base, session, tmp_path / "mf"), plan(base.replace(freeze=False, model_lr=1e-2, save_model=True),
                                                        session, tmp_path / "nomf")], session, records.append)
    frozen, tuned = records
    assert frozen.status == tuned.status == "done"
    assert (tmp_path / "nomf" / "model.safetensors").is_file() and tuned.model_file.endswith("model.safetensors")
    assert tuned.stored_bytes > 100 * frozen.stored_bytes
    assert tuned.history != frozen.history


# ---------------------------------------------------------------- the store and sweeps


def _tiny_spec(tmp_path, model_dir, sib200_dir, extra="") -> Path:
    return _write(tmp_path / "spec.yaml", f"model: {model_dir}\ndata: {sib200_dir}\ndtype: float32\nshots: 2\nepochs: 2\n"
                                          f"prompt_length: [1, 3]\nreparam_hidden: [0, 8]\nseed: [0, 1]\n"
                                          f"langs: eng_Latn,fra_Latn\n{extra}")


def _status(spec, store) -> dict:
    out = subprocess.run([sys.executable, "-m", "xlspt.cli", "sweep", str(spec), "--store", str(store), "--status", "--json"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def test_sweep_status_retry_and_a_failed_run_that_does_not_stop_the_sweep(tmp_path, tiny_model_dirs, sib200_dir, capsys):
    spec = _tiny_spec(tmp_path, tiny_model_dirs["gemma3"], sib200_dir, "lr: [0.005, 1.0e+30]\n")
    store = tmp_path / "store"
    assert main(["sweep", str(spec), "--store", str(store), "--status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"total": 16, "done": 0, "failed": 0, "running": 0, "pending": 16}
    assert main(["sweep", str(spec), "--store", str(store), "--quiet"]) == 0
    counts = _status(spec, store)
    assert counts["done"] == 8 and counts["failed"] == 8 and counts["pending"] == 0
    failed = [r for r in ResultStore(store).records() if r.status == "failed"]
    assert all(r.config["lr"] == 1e30 and "lower the learning rate" in r.error for r in failed)
    capsys.readouterr()
    assert main(["sweep", str(spec), "--store", str(store), "--status"]) == 0
    table = capsys.readouterr().out.splitlines()
    failed_lines = [line for line in table if "  failed  " in line]
    assert len(failed_lines) == 8 and all("lower the learning rate (lr 1e+30)" in line for line in failed_lines)
    before = {r.run_id: r.finished for r in ResultStore(store).records()}
    assert main(["sweep", str(spec), "--store", str(store), "--quiet"]) == 0  # nothing to do: failed runs stay
    assert {r.run_id: r.finished for r in ResultStore(store).records()} == before
    assert main(["sweep", str(spec), "--store", str(store), "--quiet", "--retry-failed"]) == 0
    after = {r.run_id: r.finished for r in ResultStore(store).records()}
    assert sorted(k for k in after if after[k] != before[k]) == sorted(r.run_id for r in failed)


def test_a_sweep_killed_with_sigkill_resumes_without_losing_or_duplicating_runs(tmp_path, tiny_model_dirs, sib200_dir):
    spec = _tiny_spec(tmp_path, tiny_model_dirs["gemma3"], sib200_dir, "freeze: [true, false]\nepochs: 6\nshots: 4\n")
    spec.write_text(spec.read_text().replace("epochs: 2\n", "").replace("shots: 2\n", ""))
    store = tmp_path / "store"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "xlspt.cli", "sweep", str(spec), "--store", str(store), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill once some runs are done and others are not
        done = len(list((store / "runs").glob("*/record.json"))) if (store / "runs").is_dir() else 0
        if done >= 9:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    counts = _status(spec, store)
    assert counts["total"] == 16 and counts["running"] == 0  # a dead process's lock is gone
    assert 9 <= counts["done"] < 16 and counts["done"] + counts["pending"] == 16
    records = {r.run_id: r for r in ResultStore(store).records()}
    assert all(r.status == "done" and len(r.results) == 2 for r in records.values())  # nothing half-written
    first_pass = {k: r.finished for k, r in records.items()}
    assert subprocess.run([sys.executable, "-m", "xlspt.cli", "sweep", str(spec), "--store", str(store), "--quiet"],
                          capture_output=True, text=True).returncode == 0
    assert _status(spec, store) == {"total": 16, "done": 16, "failed": 0, "running": 0, "pending": 0}
    final = {r.run_id: r for r in ResultStore(store).records()}
    assert len(final) == 16 and len(list((store / "runs").glob("*/record.json"))) == 16
    assert all(final[k].finished == first_pass[k] for k in first_pass)  # finished runs were not run again


def test_status_sees_a_run_in_progress(tmp_path):
    store = ResultStore(tmp_path / "store")
    with store.claim(["abc"]) as owned:
        assert owned == ["abc"]
        assert store.status("abc") == RunStatus.RUNNING
        with store.claim(["abc"]) as again:  # a second worker does not get it
            assert again == []
    assert store.status("abc") == RunStatus.PENDING


def test_sweep_on_ray_matches_the_local_sweep_and_leaves_no_process(tmp_path, tiny_model_dirs, sib200_dir):
    pytest.importorskip("ray")
    spec = _tiny_spec(tmp_path, tiny_model_dirs["llama"], sib200_dir, "freeze: [true, false]\n")
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert main(["sweep", str(spec), "--store", str(local), "--quiet"]) == 0
    assert main(["sweep", str(spec), "--store", str(remote), "--quiet", "--executor", "ray"]) == 0
    a = {r.run_id: r.results for r in ResultStore(local).records()}
    b = {r.run_id: r.results for r in ResultStore(remote).records()}
    assert len(a) == 16 and a.keys() == b.keys()
    for run_id in a:
        for x, y in zip(a[run_id], b[run_id]):
            assert x["accuracy"] == pytest.approx(y["accuracy"], abs=2 / x["n"])  # one thread per task rounds differently
    leftover = subprocess.run(["pgrep", "-f", "raylet|gcs_server"], capture_output=True, text=True).stdout.strip()
    assert leftover == ""


def test_ray_missing_gives_one_line(tmp_path, tiny_model_dirs, sib200_dir, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("no ray")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    spec = _tiny_spec(tmp_path, tiny_model_dirs["gemma3"], sib200_dir)
    assert main(["sweep", str(spec), "--store", str(tmp_path / "s"), "--executor", "ray", "--quiet"]) == 2
    assert "pip install -e '.[ray]' in the xlspt clone" in capsys.readouterr().err


def test_command_line_flags_override_the_spec(tmp_path, tiny_model_dirs, sib200_dir, capsys):
    spec = _tiny_spec(tmp_path, tiny_model_dirs["gemma3"], sib200_dir)
    assert main(["sweep", str(spec), "--store", str(tmp_path / "s"), "--status", "--json", "--seed", "5", "--no-freeze"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 4  # 2 lengths x 2 reparameterizations x one seed
    assert main(["sweep", str(spec), "--store", str(tmp_path / "s"), "--status", "--shots", "0"]) == 2
    assert "shots: must be at least 1" in capsys.readouterr().err


def test_the_paper_preset_runs_on_tiny_xglm_and_bloom(tmp_path, tiny_model_dirs, sib200_dir, tiny_models):
    """The study's grid as the preset writes it, shrunk: the path the Hub models would take."""
    import yaml

    from xlspt.engine import encode_texts
    from xlspt.study import preset_path, run_sweep

    values = yaml.safe_load(preset_path("paper").read_text())
    assert values["special_tokens"] == "reference"
    values.update(model=[str(tiny_model_dirs["xglm"]), str(tiny_model_dirs["bloom"])], data=str(sib200_dir),
                  prompt_length=[1, 4], reparam_hidden=8, shots=2, epochs=1, seed=0, langs="eng_Latn,fra_Latn")
    status = run_sweep(expand(values), ResultStore(tmp_path / "store"), progress=False)
    assert status.as_json() == {"total": 8, "done": 8, "failed": 0, "running": 0, "pending": 0}
    sidecars = [json.loads(p.read_text()) for p in (tmp_path / "store" / "runs").glob("*/prompt.json")]
    assert len(sidecars) == 8 and {s["train_config"]["special_tokens"] for s in sidecars} == {"reference"}
    xglm = tiny_models["xglm"]
    text = ["The team won the match."]
    assert encode_texts(xglm, text, 4)[0][0] == xglm.tokenizer.bos_token_id  # the tokenizer's own: </s> (here <bos>) first
    assert encode_texts(xglm, text, 4, special_tokens="reference")[0][0] != xglm.tokenizer.bos_token_id


def test_run_id_names_the_data_by_its_content_wherever_it_lies(tmp_path, monkeypatch, sib200_dir):
    from xlspt.study.runner import Session, plan

    def run_id(data: str | Path, langs: str = "eng_Latn,fra_Latn") -> str:
        config = RunConfig(data=str(data), dtype="float32", langs=langs)
        return plan(config, Session(progress=False), tmp_path / "unused").run_id

    copy = tmp_path / "deep" / "another-name"
    for lang in ("eng_Latn", "fra_Latn"):
        shutil.copytree(sib200_dir / lang, copy / lang)
    absolute = run_id(sib200_dir)
    monkeypatch.chdir(sib200_dir.parent)
    assert run_id(sib200_dir.name) == absolute  # relative or absolute, from anywhere
    assert run_id(copy) == absolute  # the same content in another folder
    changed = tmp_path / "changed"
    shutil.copytree(copy, changed)
    test = changed / "fra_Latn" / "test.tsv"
    test.write_text(test.read_text(encoding="utf-8").replace("\t", "\t", 1).rsplit("\n", 2)[0] + "\n", encoding="utf-8")
    assert run_id(changed) != absolute  # other content (a row fewer), another run
    assert run_id(changed, "eng_Latn") == run_id(copy, "eng_Latn")  # ... unless the run does not read that file
