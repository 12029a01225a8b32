"""Prompt ensembles and the calibration protocols, on tiny models: the maths, the API, the CLI and the sweep."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import xlspt
from xlspt import calibration as cal
from xlspt.calibration import CalibrationConfig
from xlspt.cli import main
from xlspt.data.sib200 import CATEGORIES
from xlspt.errors import ConfigError, XlsptError
from xlspt.pipeline import calibration_from
from xlspt.study import ResultStore, RunConfig

LANGS = ["eng_Latn", "fra_Latn"]
DATA = "0" * 64  # a data checksum standing for the data in run ids


# ---------------------------------------------------------------- the maths


@settings(max_examples=50, deadline=None)
@given(arrays("float32", st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(2, 7)),
              elements=st.floats(-30, 30, width=32)))
def test_a_uniform_prior_changes_nothing(logits):
    logp = cal.log_probs(torch.from_numpy(logits))
    uniform = torch.full((logp.shape[0], logp.shape[2]), -math.log(logp.shape[2]))
    torch.testing.assert_close(cal.combine(logp, uniform), cal.combine(logp))


@settings(max_examples=50, deadline=None)
@given(arrays("float32", st.tuples(st.integers(1, 6), st.integers(2, 7)), elements=st.floats(-30, 30, width=32)),
       st.integers(1, 5))
def test_an_ensemble_of_identical_members_is_the_member(logits, copies):
    logp = cal.log_probs(torch.from_numpy(logits))
    torch.testing.assert_close(cal.combine(logp.expand(copies, -1, -1)), logp)


def test_dividing_out_a_prior_removes_a_constant_label_shift():
    torch.manual_seed(0)
    clean = torch.randn(1, 50, 7)
    shifted = clean + torch.tensor([3.0, 0, 0, 0, 0, 0, -2.0])  # a language that leans to class 0
    assert (shifted.argmax(-1) == 0).float().mean() > 0.5
    fixed = cal.combine(cal.log_probs(shifted), cal.log_prior(cal.log_probs(shifted)))
    truth = clean[0].argmax(-1)
    before, after = (shifted[0].argmax(-1) == truth).float().mean(), (fixed.argmax(-1) == truth).float().mean()
    assert after > before + 0.5  # 18% -> 78% of the clean argmax here


def test_standardizing_to_ones_own_statistics_changes_nothing():
    states = torch.randn(3, 40, 16) * 4 + 2
    own = cal.StateStatistics.of(states)
    torch.testing.assert_close(own.standardize_to(states, own), states, rtol=1e-5, atol=1e-5)
    moved = own.standardize_to(states, cal.StateStatistics(torch.zeros(3, 16), torch.ones(3, 16)))
    torch.testing.assert_close(moved.mean(dim=1), torch.zeros(3, 16), atol=1e-5, rtol=0)
    torch.testing.assert_close(moved.std(dim=1), torch.ones(3, 16), atol=1e-5, rtol=0)


def test_calibration_config_names_its_protocol_and_refuses_nonsense():
    assert CalibrationConfig().name == "zero-shot"
    assert CalibrationConfig("content-free").name == "a:content-free(script)"
    assert CalibrationConfig("content-free", by_script=False).name == "a:content-free"
    assert CalibrationConfig("unlabeled").name == "b:unlabeled(dev)"
    assert CalibrationConfig("batch").to_dict()["family"] == "b"
    assert CalibrationConfig("unlabeled", standardize=True).name == "b:unlabeled(dev)+standardize"
    assert CalibrationConfig.from_dict(CalibrationConfig("batch").to_dict()) == CalibrationConfig("batch")
    with pytest.raises(ValueError):
        CalibrationConfig("prior")
    with pytest.raises(ConfigError) as info:
        CalibrationConfig("zero-shot", standardize=True)
    assert info.value.field == "standardize"
    only = CalibrationConfig("unlabeled", standardize=True, prior=False)
    assert only.name == "b:unlabeled(dev)+standardize-only" and CalibrationConfig.from_name(only.name).prior is False
    assert CalibrationConfig.from_dict(only.to_dict()) == only
    assert "prior" not in CalibrationConfig("unlabeled", standardize=True).to_dict()  # earlier sidecars read the same
    with pytest.raises(ConfigError) as info:
        CalibrationConfig("unlabeled", prior=False)
    assert info.value.field == "prior"


def test_standardizing_without_the_prior_scores_the_standardized_read_out_alone(ensemble, data):
    member = ensemble.member(0)
    member.fit_reference(data, force=True)
    texts = data.split("fra_Latn", "test")["text"].tolist()
    alone = member.scores(texts, calibration=CalibrationConfig("batch", standardize=True, prior=False))
    with_prior = member.scores(texts, calibration=CalibrationConfig("batch", standardize=True))
    # the batch prior is the mean of the standardized read-out's probabilities: dividing it out gives the full form
    torch.testing.assert_close(cal.combine(alone[None], cal.log_prior(alone[None])), with_prior, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(alone, with_prior, atol=1e-3)


def test_content_free_texts_are_seeded_and_have_no_special_tokens(tiny_models):
    tokenizer = tiny_models["gemma3"].tokenizer
    texts = cal.content_free_texts(tokenizer, 8, seed=3)
    assert texts == cal.content_free_texts(tokenizer, 8, seed=3) and len(texts) == len(cal.PLACEHOLDERS) + 8
    assert not any(tok in t for t in texts for tok in tokenizer.all_special_tokens if tok)


# ---------------------------------------------------------------- the Python API


@pytest.fixture(scope="module")
def ensemble(tiny_models, data):
    return xlspt.PromptClassifier.train(
        tiny_models["gemma3"], data, shots=2, prompt=xlspt.PromptConfig(length=2),
        training=xlspt.TrainConfig(epochs=2), ensemble=3, progress=False, recipe="study",
    )


def test_an_ensemble_records_its_members_and_their_samples(ensemble, tiny_models, data):
    meta = ensemble.sidecar_dict()["ensemble"]
    assert ensemble.size == 3 and meta["seeds"] == [0, 1, 2] and meta["sampling"] == "per-member"
    own = {i for m in meta["members"] for i in m["data"]["train_index_ids"]}
    assert meta["distinct_train_examples"] == len(own) > 14
    shared = xlspt.PromptClassifier.train(
        tiny_models["gemma3"], data, shots=2, prompt=xlspt.PromptConfig(length=2),
        training=xlspt.TrainConfig(epochs=2), ensemble=[0, 5], shared_sample=True, progress=False, recipe="study",
    )
    assert shared.sidecar_dict()["ensemble"]["sampling"] == "shared" and shared.sidecar_dict()["ensemble"]["distinct_train_examples"] == 14
    # member 0 of both is the prompt of seed 0 alone
    alone = xlspt.PromptClassifier.train(tiny_models["gemma3"], data, shots=2, prompt=xlspt.PromptConfig(length=2),
                                         training=xlspt.TrainConfig(epochs=2), progress=False, recipe="study")
    for member in (ensemble.prompts[0], shared.prompts[0]):  # trained side by side: equal up to float rounding
        torch.testing.assert_close(member, alone.prompt, rtol=1e-4, atol=1e-5)
    assert not torch.equal(ensemble.prompts[1], shared.prompts[1])  # seed 1's sample against seed 0's


def test_an_ensemble_of_one_prompt_repeated_predicts_as_the_prompt(ensemble, data):
    one = ensemble.member(1)
    repeated = xlspt.PromptClassifier.ensemble_of([one, one, one])
    texts = data.split("fra_Latn", "test")["text"].tolist()[:40]
    torch.testing.assert_close(repeated.scores(texts), one.scores(texts), rtol=1e-5, atol=1e-5)
    assert repeated.predict(texts) == one.predict(texts)
    pd.testing.assert_frame_equal(repeated.evaluate(data, LANGS, progress=False), one.evaluate(data, LANGS, progress=False))


@pytest.mark.parametrize("protocol,standardize,prior", [
    ("zero-shot", False, True), ("content-free", False, True), ("unlabeled", False, True), ("batch", False, True),
    ("unlabeled", True, True), ("batch", True, True), ("unlabeled", True, False)])
def test_a_saved_ensemble_reevaluates_exactly_with_its_protocol(ensemble, tiny_models, data, tmp_path, protocol, standardize, prior):
    calibration = CalibrationConfig(protocol, standardize=standardize, prior=prior)
    before = ensemble.evaluate(data, LANGS, calibration=calibration, members=True, progress=False)
    assert set(before["protocol"]) == {calibration.name}
    assert list(before["member"].unique()) == ["ensemble", "0", "1", "2"]
    ensemble.calibration = calibration
    ensemble.save(tmp_path)
    sidecar = json.loads((tmp_path / "prompt.json").read_text())
    assert sidecar["calibration"]["name"] == calibration.name and sidecar["ensemble"]["size"] == 3
    again = xlspt.PromptClassifier.load(tmp_path, tiny_models["gemma3"])
    assert again.calibration == calibration and again.size == 3
    assert all(torch.equal(a, b) for a, b in zip(again.prompts, ensemble.prompts))
    pd.testing.assert_frame_equal(again.evaluate(data, LANGS, members=True, progress=False), before)
    assert (again.reference is not None) == standardize
    ensemble.calibration, ensemble.reference = CalibrationConfig(), None


def test_calibration_on_the_batch_refuses_a_small_batch_and_unlabeled_needs_texts(ensemble):
    with pytest.raises(XlsptError, match="too few"):
        ensemble.predict(["one text", "another"], calibration=CalibrationConfig("batch"))
    with pytest.raises(XlsptError, match="unlabeled texts"):
        ensemble.predict(["one text"], calibration=CalibrationConfig("unlabeled"))
    labels = ensemble.predict(["le match", "la science"], calibration=CalibrationConfig("unlabeled"),
                              unlabeled_texts=["un texte", "un autre", "encore un"])
    assert len(labels) == 2 and set(labels) <= set(xlspt.CATEGORIES)


def test_unlabeled_calibration_never_reads_the_split_it_scores(ensemble, data):
    with pytest.raises(ConfigError) as info:
        ensemble.evaluate(data, LANGS, calibration=CalibrationConfig("unlabeled", unlabeled_split="test"), progress=False)
    assert info.value.field == "unlabeled_split"


def test_calibration_moves_a_skewed_language_off_its_favourite_label(ensemble, data):
    zero = ensemble.evaluate(data, ["fra_Latn"], progress=False)
    fixed = ensemble.evaluate(data, ["fra_Latn"], calibration=CalibrationConfig("batch"), progress=False)
    texts = data.split("fra_Latn", "test")["text"].tolist()
    counts = pd.Series(ensemble.predict(texts)).value_counts()
    balanced = pd.Series(ensemble.predict(texts, calibration=CalibrationConfig("batch"))).value_counts()
    assert balanced.max() <= counts.max()  # dividing out the batch's prior never concentrates the labels further
    assert zero["protocol"][0] == "zero-shot" and fixed["protocol"][0] == "b:batch"


# ---------------------------------------------------------------- config, CLI and sweep


def test_new_fields_leave_earlier_run_ids_alone():
    base = RunConfig(dtype="float32", langs="eng_Latn")
    assert set(base.canonical()) >= {"seed", "shots"} and not {"ensemble", "calibration", "shared_sample"} & set(base.canonical())
    assert base.run_id(data_checksum=DATA) != base.replace(ensemble=2).run_id(data_checksum=DATA) != base.replace(ensemble=2, shared_sample=True).run_id(data_checksum=DATA)
    assert base.run_id(data_checksum=DATA) != base.replace(calibration="batch").run_id(data_checksum=DATA)
    assert base.replace(ensemble=3).member_seeds() == [0, 1, 2]
    with pytest.raises(ConfigError) as info:
        RunConfig(ensemble=0)
    assert info.value.field == "ensemble"
    with pytest.raises(ConfigError) as info:
        RunConfig(standardize=True)
    assert info.value.field == "standardize"
    only = RunConfig(dtype="float32", langs="eng_Latn", calibration="unlabeled", standardize=True, prior=False)
    assert "prior" not in base.canonical() and only.run_id(data_checksum=DATA) != only.replace(prior=True).run_id(data_checksum=DATA)
    assert only.short_name().endswith("unlabeled+standardize-only") and only.calibration_config().prior is False
    with pytest.raises(ConfigError) as info:
        RunConfig(calibration="unlabeled", prior=False)
    assert info.value.field == "prior"


def test_the_protocol_is_in_every_output_of_a_run(tiny_model_dirs, sib200_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "--preset", "study", "--model", str(tiny_model_dirs["gemma3"]), "--data", str(sib200_dir), "--dtype", "float32",
            "--shots", "2", "--epochs", "2", "--prompt-length", "2", "--langs", ",".join(LANGS), "--quiet",
            "--ensemble", "2", "--calibration", "content-free", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "a:content-free(script) (protocol a" in printed
    assert set(pd.read_csv(out / "results.csv")["protocol"]) == {"a:content-free(script)"}
    assert json.loads((out / "summary.json").read_text())["protocol"] == "a:content-free(script)"
    assert "protocol: a:content-free(script)" in (out / "summary.txt").read_text()
    record = json.loads((out / "record.json").read_text())
    assert record["protocol"] == "a:content-free(script)" and len(record["member_results"]) == 2
    sidecar = json.loads((out / "prompt.json").read_text())
    assert sidecar["calibration"]["protocol"] == "content-free" and sidecar["ensemble"]["seeds"] == [0, 1]
    # evaluate re-reads it with its protocol, or another one, and never mixes them in one table
    assert main(["evaluate", "--prompt", str(out), "--data", str(sib200_dir), "--langs", ",".join(LANGS), "--quiet",
                 "--out", str(tmp_path / "ev")]) == 0
    again = pd.read_csv(tmp_path / "ev" / "results.csv")
    pd.testing.assert_frame_equal(again, pd.read_csv(out / "results.csv"))
    capsys.readouterr()
    assert main(["evaluate", "--prompt", str(out), "--prompt", str(out), "--data", str(sib200_dir), "--langs", "fra_Latn",
                 "--quiet", "--calibration", "batch", "--members"]) == 0
    text = capsys.readouterr().out
    assert text.count("[b:batch]") == 6  # 2 ensembles and their 2 members each
    assert main(["predict", "--prompt", str(out), "le match de football", "--calibration", "batch"]) == 2
    assert "too few" in capsys.readouterr().err


def test_predict_with_unlabeled_texts_from_a_file(tiny_model_dirs, sib200_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "study", "--model", str(tiny_model_dirs["xglm"]), "--data", str(sib200_dir), "--dtype", "float32",
                 "--shots", "2", "--epochs", "1", "--quiet", "--ensemble", "2", "--out", str(out)]) == 0
    unlabeled = tmp_path / "unlabeled.txt"
    unlabeled.write_text("\n".join(["un texte", "une autre phrase", "le gouvernement"]), encoding="utf-8")
    capsys.readouterr()
    assert main(["predict", "--prompt", str(out), "le match", "--calibration", "unlabeled", "--unlabeled", str(unlabeled)]) == 0
    captured = capsys.readouterr()
    assert captured.out.endswith("\tle match\n") and "b:unlabeled" in captured.err
    assert main(["predict", "--prompt", str(out), "le match", "--calibration", "unlabeled"]) == 2
    assert "--unlabeled FILE" in capsys.readouterr().err
    assert main(["predict", "--prompt", str(out), "le match", "--unlabeled", str(unlabeled)]) == 2
    assert "this run uses zero-shot" in capsys.readouterr().err
    assert main(["predict", "--prompt", str(out), "le match", "--calibration", "unlabeled", "--standardize",
                 "--unlabeled", str(unlabeled)]) == 2
    assert "statistics" in capsys.readouterr().err
    standardized = tmp_path / "std"
    assert main(["train", "--preset", "study", "--model", str(tiny_model_dirs["xglm"]), "--data", str(sib200_dir), "--dtype", "float32",
                 "--shots", "2", "--epochs", "1", "--quiet", "--ensemble", "2", "--calibration", "unlabeled",
                 "--standardize", "--out", str(standardized)]) == 0
    capsys.readouterr()
    assert main(["predict", "--prompt", str(standardized), "le match", "--unlabeled", str(unlabeled)]) == 0
    assert "protocol: b:unlabeled(dev)+standardize" in capsys.readouterr().err  # the saved calibration and statistics
    assert main(["predict", "--prompt", str(standardized), "le match", "--unlabeled", str(unlabeled), "--calibration",
                 "unlabeled", "--standardize", "--no-prior"]) == 0
    assert "protocol: b:unlabeled(dev)+standardize-only" in capsys.readouterr().err
    assert main(["predict", "--prompt", str(standardized), "le match", "--no-prior"]) == 2
    assert "--no-prior goes with --calibration" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--model", str(tiny_model_dirs["xglm"]), "--data", str(sib200_dir),
                 "--out", str(tmp_path / "again")]) == 2
    assert "ensemble" in capsys.readouterr().err


def test_a_sweep_trains_ensemble_members_with_the_other_runs(tiny_model_dirs, sib200_dir, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"model: {tiny_model_dirs['gemma3']}\ndata: {sib200_dir}\ndtype: float32\nshots: 2\nepochs: 2\n"
                    f"prompt_length: 2\nlangs: eng_Latn,fra_Latn\nensemble: [1, 2]\ncalibration: [zero-shot, batch]\n")
    store = tmp_path / "store"
    assert main(["sweep", str(spec), "--store", str(store), "--quiet"]) == 0
    records = {(r.config.get("ensemble", 1), r.protocol): r for r in ResultStore(store).records()}
    assert set(records) == {(1, "zero-shot"), (2, "zero-shot"), (1, "b:batch"), (2, "b:batch")}
    # the single prompt of seed 0 is member 0 of the ensemble: the same prompt, the same results alone
    member0 = records[(2, "zero-shot")].member_results[0]
    assert member0 == records[(1, "zero-shot")].results
    # the report keeps the study's analyses to zero-shot runs and puts the protocols side by side
    from xlspt.report.study import write_report

    summary = write_report(store, tmp_path / "report")
    protocols = pd.read_csv(tmp_path / "report" / "protocols.csv")
    assert {"transfer [zero-shot]", "transfer [b:batch]"} <= set(protocols.columns) and len(protocols) == 2
    assert set(pd.read_csv(tmp_path / "report" / "runs.csv")["protocol"]) == {"zero-shot", "b:batch"}
    assert len(pd.read_csv(tmp_path / "report" / "summary.csv")) == 2  # ensemble 1 and 2, zero-shot only
    assert "## Calibrated runs" in (tmp_path / "report" / "report.md").read_text() and summary["runs"] == 4


# ---------------------------------------------------------------- several label words per class


def test_several_label_words_per_class_add_their_probabilities(tiny_models):
    from xlspt.engine.readout import readout_cross_entropy_rows

    loaded = tiny_models["gemma3"]
    words = {**loaded.adapter.label_words, "sports": "sports|play", "politics": "politics|government"}
    verbalizer = xlspt.build_verbalizer(loaded, words)
    assert not verbalizer.single_words and len(verbalizer.token_ids) == 9
    word_logits = torch.randn(5, 9)
    classes = verbalizer.class_logits(word_logits)
    sports = verbalizer.labels.index("sports")
    ids = [i for i, c in enumerate(verbalizer.word_class) if c == sports]
    torch.testing.assert_close(classes[:, sports], torch.logsumexp(word_logits[:, ids], dim=1))
    targets = verbalizer.target_token_ids(["sports", "health"])
    assert targets.shape == (2, 2) and targets[1, 1] == -1
    hidden = torch.randn(2, loaded.hidden_size)
    losses = readout_cross_entropy_rows(loaded, hidden, targets)
    probs = torch.softmax(loaded.adapter.logits(loaded.model, hidden).float(), dim=1)
    expected = -torch.log(torch.stack([probs[0, targets[0]].sum(), probs[1, targets[1, 0]]]))
    torch.testing.assert_close(losses, expected, rtol=1e-4, atol=1e-5)
    single = xlspt.build_verbalizer(loaded, None)
    assert single.single_words and torch.equal(single.class_logits(word_logits[:, :7]), word_logits[:, :7])


def test_a_prompt_trains_and_reloads_with_several_words_per_class(tiny_models, data, tmp_path):
    loaded = tiny_models["llama"]
    words = {**loaded.adapter.label_words, "sports": "sports|play"}
    clf = xlspt.PromptClassifier.train(loaded, data, shots=2, label_words=words, training=xlspt.TrainConfig(epochs=2),
                                       progress=False, recipe="study")
    assert clf.metadata.label_words["sports"] == "sports|play"
    clf.save(tmp_path)
    again = xlspt.PromptClassifier.load(tmp_path, loaded)
    assert again.verbalizer == clf.verbalizer
    pd.testing.assert_frame_equal(again.evaluate(data, LANGS, progress=False), clf.evaluate(data, LANGS, progress=False))


def test_run_presets_are_one_configuration_and_flags_override_them():
    from xlspt.cli import build_parser
    from xlspt.cli.flags import run_config as _run_config
    from xlspt.study.spec import RUN_PRESETS, run_preset

    for name in ("quality", "quality-lora", "quality-unlabeled"):
        config = run_preset(name)
        assert config.ensemble > 1 and config.calibration.value != "zero-shot"
    assert set(RUN_PRESETS) == {"quality", "quality-lora", "quality-unlabeled", "study"}
    lora = run_preset("quality-lora")
    assert lora.method.value == "lora" and lora.lora_config() is not None
    assert lora.calibration_config().name == "a:content-free"  # the whole vocabulary's random tokens, as chosen
    assert run_preset("study") == RunConfig()  # the study's prompt is the run settings' defaults: run ids unchanged
    args = build_parser().parse_args(["run", "--preset", "quality", "--shots", "4", "--langs", "eng_Latn"])
    config = _run_config(args)
    assert config.shots == 4 and config.ensemble == run_preset("quality").ensemble
    assert config.calibration == run_preset("quality").calibration
    unlabeled = _run_config(build_parser().parse_args(["run", "--preset", "quality-unlabeled"]))
    assert unlabeled.calibration.value == "unlabeled" and unlabeled.standardize and not unlabeled.prior
    assert _run_config(build_parser().parse_args(["run", "--preset", "quality-unlabeled", "--prior"])).prior


def test_without_a_preset_run_and_train_use_the_default_recipe_and_name_it():
    from xlspt.classifiers.recipes import DEFAULT_RECIPE
    from xlspt.cli import build_parser
    from xlspt.cli.flags import recipe_config as _recipe_config
    from xlspt.study.spec import run_preset

    def config(*argv):
        return _recipe_config(build_parser().parse_args(list(argv)))

    for command in ("run", "train"):
        chosen, line = config(command)
        assert chosen == run_preset(DEFAULT_RECIPE)
        assert line.startswith(f"recipe {DEFAULT_RECIPE} (the default; --preset study") and "8 reparameterized prompts" in line
    assert config("run", "--ensemble", "2")[0].ensemble == 2  # flags override the recipe as they override a preset
    chosen, line = config("run", "--preset", "study")
    assert chosen == RunConfig() and line.startswith("recipe study:")
    # a probe, a model trained with its prompt or a resumed prompt: the study's settings, no recipe line
    for argv in (("train", "--method", "probe"), ("run", "--no-freeze"), ("train", "--resume", "some/prompt")):
        chosen, line = config(*argv)
        assert chosen.ensemble == 1 and chosen.calibration.value == "zero-shot" and line is None


def test_a_run_names_its_recipe_first_once_its_input_is_checked(tiny_model_dirs, sib200_dir, tmp_path, capsys):
    args = ["--model", str(tiny_model_dirs["gemma3"]), "--data", str(sib200_dir), "--dtype", "float32", "--shots", "1",
            "--epochs", "1", "--ensemble", "2", "--langs", "fra_Latn", "--quiet"]
    assert main(["run", *args, "--out", str(tmp_path / "run")]) == 0
    assert capsys.readouterr().err.splitlines()[0].startswith("recipe quality (the default")
    record = json.loads((tmp_path / "run" / "record.json").read_text())
    assert record["protocol"].startswith("a:content-free") and len(record["member_results"]) == 2
    assert main(["run", *args, "--langs", "xx_Nope", "--out", str(tmp_path / "bad")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1  # bad input: the error alone


def test_the_python_api_trains_the_default_recipe_unless_told_otherwise(tiny_models, data):
    from xlspt.classifiers.recipes import recipe

    fast = dict(shots=1, training=xlspt.TrainConfig(epochs=1, batch_size=7), progress=False)
    default = xlspt.PromptClassifier.train(tiny_models["gemma3"], data, **fast)
    quality = recipe("quality").values
    assert default.size == quality["ensemble"] and default.calibration.protocol.value == quality["calibration"]
    assert default.soft_prompt.config.reparam_hidden == quality["reparam_hidden"]
    study = xlspt.PromptClassifier.train(tiny_models["gemma3"], data, recipe="study", **fast)
    assert study.size == 1 and study.calibration == xlspt.CalibrationConfig() and study.soft_prompt.config.reparam_hidden is None
    given = xlspt.PromptClassifier.train(tiny_models["gemma3"], data, ensemble=2, prompt=xlspt.PromptConfig(length=2), **fast)
    assert given.size == 2 and given.prompt.shape[0] == 2 and given.calibration.protocol.value == quality["calibration"]
    with pytest.raises(xlspt.XlsptError, match="unknown recipe"):
        xlspt.PromptClassifier.train(tiny_models["gemma3"], data, recipe="best", **fast)
    lora = xlspt.PromptClassifier.train(tiny_models["gemma3"], data, recipe="quality-lora", ensemble=2, **fast)
    assert isinstance(lora, xlspt.LoraClassifier) and lora.size == 2
    assert lora.calibration.name == "a:content-free" and not lora.calibration.by_script


def test_the_lora_recipe_runs_saves_and_predicts_from_the_command_line(tiny_model_dirs, sib200_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--model", str(tiny_model_dirs["gemma3"]), "--data", str(sib200_dir), "--dtype", "float32", "--shots", "1",
            "--epochs", "1", "--ensemble", "2", "--langs", "fra_Latn", "--quiet"]
    assert main(["run", "--preset", "quality-lora", *args, "--out", str(out)]) == 0
    assert capsys.readouterr().err.splitlines()[0].startswith("recipe quality-lora: 4 reparameterized 32-shot prompts")
    record = json.loads((out / "record.json").read_text())
    assert record["protocol"] == "a:content-free" and record["config"]["method"] == "lora"
    assert record["config"]["content_free_script"] is False and len(record["member_results"]) == 2
    assert main(["predict", "--prompt", str(out), "--format", "json", "Le match de football", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["label"] in CATEGORIES


def test_content_free_script_goes_with_content_free_calibration():
    with pytest.raises(xlspt.XlsptError, match="content_free_script.*calibration content-free"):
        RunConfig(content_free_script=False)
    with pytest.raises(xlspt.XlsptError, match="--no-content-free-script goes with --calibration content-free"):
        calibration_from("unlabeled", by_script=False)
    config = RunConfig(calibration="content-free", content_free_script=False)
    assert not config.calibration_config().by_script and config.short_name().endswith("content-free-anyscript")
    assert "content_free_script" not in RunConfig(calibration="content-free").canonical(data_checksum="x")


def test_label_words_are_chosen_on_the_training_languages_dev_split(tiny_model_dirs, sib200_dir, capsys):
    args = ["label-words", "--model", str(tiny_model_dirs["xglm"]), "--data", str(sib200_dir), "--dtype", "float32",
            "--shots", "1", "--epochs", "1", "--quiet", "--candidate", "default",
            "--candidate", "sports=sports|play,politics=politics|government,geography=earth,"
            "science/technology=science,entertainment=entertainment,health=health,travel=travel"]
    assert main(args) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 2 and all(line.split("%")[0].strip().replace(".", "").isdigit() for line in lines)
    accuracies = [float(line.split("%")[0]) for line in lines]
    best = lines[accuracies.index(max(accuracies))]
    assert "best on eng_Latn dev: --label-words" in captured.err
    assert ("sports|play" in best) == ("sports|play" in captured.err)


def test_content_free_inputs_follow_the_languages_script(tiny_models, tmp_path):
    from xlspt.engine import ReadoutConfig
    from xlspt.evaluate import Calibrator, Vote

    tokenizer = tiny_models["gemma3"].tokenizer
    assert cal.script_of("ory_Orya") == "Orya" and cal.script_of("xx") is None
    latin = cal.content_free_texts(tokenizer, 4, script="Latn")
    assert all(t.replace(" ", "").isalpha() for t in latin[len(cal.PLACEHOLDERS):])
    loaded = tiny_models["gemma3"]
    verbalizer = xlspt.build_verbalizer(loaded)
    prompts = [torch.randn(2, loaded.hidden_size)]
    config = CalibrationConfig("content-free")
    calibrator = Calibrator(loaded, verbalizer, prompts, [Vote((0,), config)], ReadoutConfig(max_length=32))
    by_script = calibrator.content_free(config, "fra_Latn")
    anywhere = calibrator.content_free(CalibrationConfig("content-free", by_script=False), "fra_Latn")
    assert by_script.shape == anywhere.shape and not torch.equal(by_script, anywhere)
    assert torch.equal(calibrator.content_free(config, None), anywhere)  # no language known: any script
