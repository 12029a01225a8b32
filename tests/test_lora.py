"""Low-rank adapters through PEFT on tiny models of every family: attached only inside the block, and the shared
base model exactly as it was afterwards."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from xlspt.errors import ConfigError
from xlspt.lora import LoraConfig, attached_lora, lora_weights

pytest.importorskip("peft")


def logits(loaded, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return loaded.model(input_ids=ids).logits


def test_adapters_change_the_model_only_inside_the_block(tiny):
    ids = torch.tensor([[2, 10, 11, 12, 13]])
    before = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    grads = {k: p.requires_grad for k, p in tiny.model.named_parameters()}
    plain = logits(tiny, ids)
    config = LoraConfig(rank=2, alpha=4)
    with attached_lora(tiny, config, seed=0) as params:
        assert params and all(p.requires_grad for p in params.values())
        assert {name.split(".lora_")[0].rsplit(".", 1)[-1] for name in params} == set(tiny.adapter.lora_targets)
        torch.testing.assert_close(logits(tiny, ids), plain, rtol=0, atol=0)  # B starts at zero
        with torch.no_grad():
            for p in params.values():
                p.add_(torch.randn_like(p) * 0.5)
        changed = logits(tiny, ids)
        saved = lora_weights(tiny)
    assert not torch.allclose(changed, plain)
    assert tiny.model.state_dict().keys() == before.keys()
    assert all(torch.equal(tiny.model.state_dict()[k], v) for k, v in before.items())
    assert {k: p.requires_grad for k, p in tiny.model.named_parameters()} == grads
    torch.testing.assert_close(logits(tiny, ids), plain, rtol=0, atol=0)
    with attached_lora(tiny, config, saved):  # saved weights give the same model back
        torch.testing.assert_close(logits(tiny, ids), changed, rtol=0, atol=0)
    torch.testing.assert_close(logits(tiny, ids), plain, rtol=0, atol=0)


def test_an_error_inside_the_block_still_removes_the_adapters(tiny_models):
    loaded = tiny_models["llama"]
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    with pytest.raises(RuntimeError, match="boom"):
        with attached_lora(loaded, LoraConfig(), seed=0):
            raise RuntimeError("boom")
    assert loaded.model.state_dict().keys() == before.keys()


def test_settings_are_checked_and_name_their_field(tiny_models):
    with pytest.raises(ConfigError, match="rank"):
        LoraConfig(rank=0)
    with pytest.raises(ConfigError, match="dropout"):
        LoraConfig(dropout=1.0)
    with pytest.raises(ConfigError, match="target_modules.*no linear layer"):
        with attached_lora(tiny_models["bloom"], LoraConfig(target_modules=("q_proj",))):
            pass
    assert LoraConfig.from_dict(LoraConfig(rank=4, target_modules=("q_proj",)).to_dict()) == LoraConfig(rank=4, target_modules=("q_proj",))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_adapters_train_with_the_prompt_and_leave_the_base_model_as_it_was(tiny_model_dirs, data, dtype):
    import xlspt
    from xlspt.classifiers import build_verbalizer
    from xlspt.train import train_prompts

    loaded = xlspt.load_model(str(tiny_model_dirs["gemma3"]), dtype=dtype)
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    verbalizer = build_verbalizer(loaded)
    examples = xlspt.sample_few_shot(data, "eng_Latn", 2, 0)
    config = xlspt.TrainConfig(epochs=4, batch_size=4, lr=5e-2, model_lr=5e-2)
    with attached_lora(loaded, LoraConfig(rank=2), seed=0) as adapters:
        start = {name: p.detach().clone() for name, p in adapters.items()}
        [result] = train_prompts(loaded, verbalizer, examples, [xlspt.PromptConfig(length=2)], [config],
                                 adapters=list(adapters.values()), progress=False)
        trained = lora_weights(loaded)
        assert not any(p.grad is not None for p in adapters.values())
    assert any(not torch.equal(trained[k.replace(".default", "")], start[k]) for k in start)
    assert result.best_epoch >= 1 and len(result.history) == 4
    assert all(torch.equal(loaded.model.state_dict()[k], v) for k, v in before.items())
    assert not any(p.requires_grad for p in loaded.model.parameters())
    with pytest.raises(ValueError, match="one prompt on a frozen model"):
        train_prompts(loaded, verbalizer, examples, [None], [dataclasses.replace(config, freeze_model=False)],
                      adapters=[], progress=False)


# ---------------------------------------------------------------- the lora method: train, save, load, score

TEXTS = ["The team won the final match.", "Parliament voted on the new law.", "A new vaccine was tested."]


def _lora_classifier(loaded, data, ensemble=None):
    import xlspt

    return xlspt.LoraClassifier.train(loaded, data, shots=2, prompt=xlspt.PromptConfig(length=2),
                                      training=xlspt.TrainConfig(epochs=2, batch_size=4, lr=5e-2),
                                      lora=LoraConfig(rank=2, lr=5e-2), ensemble=ensemble, progress=False)


@pytest.fixture(scope="module")
def lora_pair(tiny_models, data):
    """A single LoRA classifier and a two-member ensemble, on the tiny Gemma 3."""
    loaded = tiny_models["gemma3"]
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    single, pair = _lora_classifier(loaded, data), _lora_classifier(loaded, data, ensemble=2)
    return loaded, before, single, pair


def test_a_lora_classifier_reads_through_its_adapters_and_leaves_the_model_as_it_was(lora_pair):
    from xlspt import PromptClassifier

    loaded, before, single, pair = lora_pair
    assert type(single).__name__ == "LoraClassifier" and single.size == 1 and len(single.adapters) == 1
    with_adapters = single.scores(TEXTS)
    prompt_alone = PromptClassifier(loaded, single.verbalizer, single.prompts, single.metadata).scores(TEXTS)
    assert not torch.allclose(with_adapters, prompt_alone)  # the adapters trained and are read
    assert all(torch.equal(loaded.model.state_dict()[k], v) for k, v in before.items())
    assert loaded.model.state_dict().keys() == before.keys()
    assert single.trainable_parameters == single.stored_parameters == 2 * 64 + single.adapter_parameters
    assert single.metadata.adapter_parameters == single.adapter_parameters > 0


def test_an_ensembles_members_each_have_their_own_adapters(lora_pair):
    from xlspt.classifiers import ScoreRequest, score_requests

    loaded, _, single, pair = lora_pair
    assert pair.size == 2 and len(pair.adapters) == 2
    assert any(not torch.equal(pair.adapters[0][k], pair.adapters[1][k]) for k in pair.adapters[0])
    members = score_requests([ScoreRequest(pair, TEXTS, (i,)) for i in range(2)])
    for i in range(2):
        torch.testing.assert_close(pair.member(i).scores(TEXTS), members[i], rtol=0, atol=0)
    vote = torch.log_softmax(torch.stack(members).mean(dim=0), dim=-1)  # the normalised geometric mean
    torch.testing.assert_close(pair.scores(TEXTS), vote, rtol=1e-6, atol=1e-6)


def test_prompts_and_lora_classifiers_score_together_as_each_alone(lora_pair, tiny_models, data):
    import xlspt
    from xlspt.classifiers import ScoreRequest, score_requests

    loaded, before, single, pair = lora_pair
    plain = xlspt.PromptClassifier.train(loaded, data, shots=2, prompt=xlspt.PromptConfig(length=2),
                                         training=xlspt.TrainConfig(epochs=1, batch_size=4), recipe=None, progress=False)
    requests = [ScoreRequest(single, TEXTS), ScoreRequest(plain, TEXTS), ScoreRequest(pair, TEXTS[:2]),
                ScoreRequest(single, TEXTS[1:], calibration=xlspt.CalibrationConfig("content-free"))]
    together = score_requests(requests)
    for request, scores in zip(requests, together):
        torch.testing.assert_close(score_requests([request])[0], scores, rtol=1e-6, atol=1e-6)
    assert all(torch.equal(loaded.model.state_dict()[k], v) for k, v in before.items())


def test_a_saved_lora_classifier_loads_with_its_adapters_and_refuses_damage(lora_pair, tmp_path):
    import xlspt
    from safetensors.torch import load_file

    from xlspt.errors import XlsptError

    loaded, _, single, pair = lora_pair
    for name, clf in (("single", single), ("pair", pair)):
        clf.save(tmp_path / name)
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == ["adapter_model.safetensors", "lora.json",
                                                                       "prompt.safetensors"]
        again = xlspt.load_classifier(tmp_path / name, loaded)
        assert type(again) is type(clf) and again.lora == clf.lora
        torch.testing.assert_close(again.scores(TEXTS), clf.scores(TEXTS), rtol=0, atol=0)
        assert type(xlspt.PromptClassifier.from_pretrained(tmp_path / name, loaded)) is type(clf)
    keys = list(load_file(str(tmp_path / "single" / "adapter_model.safetensors")))
    assert all(k.startswith("base_model.model.") and ".lora_" in k for k in keys)  # PEFT's saved key names
    assert all(k.startswith(("members.0.base_model.model.", "members.1.base_model.model."))
               for k in load_file(str(tmp_path / "pair" / "adapter_model.safetensors")))
    with pytest.raises(XlsptError, match="lora.json beside it.*load its folder whole"):
        xlspt.PromptClassifier.load(tmp_path / "single" / "prompt.safetensors", loaded)
    adapter = tmp_path / "single" / "adapter_model.safetensors"
    adapter.write_bytes(adapter.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(XlsptError, match="does not match the checksum in lora.json"):
        xlspt.load_classifier(tmp_path / "single", loaded)
    adapter.unlink()
    with pytest.raises(XlsptError, match="is missing: keep the files of a saved lora together"):
        xlspt.load_classifier(tmp_path / "single", loaded)


def test_run_configs_keep_lora_settings_out_of_other_methods_and_of_ids_at_their_defaults(sib200_dir):
    from xlspt.study.config import RunConfig

    base = RunConfig(data=str(sib200_dir))
    lora = base.replace(method="lora")
    assert lora.lora_config() == LoraConfig() and base.lora_config() is None
    canonical = lora.canonical(data_checksum="0")
    assert canonical["method"] == "lora" and canonical["engine"] == "naive"
    assert not any(k.startswith("lora_") for k in canonical)
    assert "lora_rank" not in base.canonical(data_checksum="0")
    ranked = lora.replace(lora_rank=4, lora_targets="q_proj")
    assert ranked.canonical(data_checksum="0")["lora_rank"] == 4 and ranked.lora_config().target_modules == ("q_proj",)
    assert ranked.run_id(data_checksum="0") != lora.run_id(data_checksum="0")
    for bad, field in ((dict(lora_rank=4), "lora_rank"), (dict(method="lora", freeze=False), "freeze"),
                       (dict(method="lora", engine="cached"), "engine"), (dict(method="lora", lora_rank=0), "lora_rank"),
                       (dict(method="lora", lora_targets=""), "lora_targets")):
        with pytest.raises(ConfigError) as caught:
            base.replace(**bad)
        assert caught.value.field == field


def test_the_command_line_runs_predicts_evaluates_serves_and_shares_a_lora_classifier(tmp_path, tiny_model_dirs,
                                                                                       sib200_dir, capsys):
    import json

    import xlspt
    from xlspt.cli import main
    from xlspt.pipeline import LoadOptions, PredictOptions, predict, push
    from xlspt.serve.tasks import Job, TaskSet

    out, plain = tmp_path / "lora", tmp_path / "plain"
    common = ["--model", str(tiny_model_dirs["gemma3"]), "--data", str(sib200_dir), "--dtype", "float32", "--shots", "2",
              "--epochs", "2", "--prompt-length", "2", "--quiet"]
    assert main(["run", "--method", "lora", "--lora-rank", "2", "--langs", "fra_Latn", "--out", str(out), *common]) == 0
    assert main(["train", "--preset", "study", "--out", str(plain), *common]) == 0
    record = json.loads((out / "record.json").read_text())
    assert record["config"]["method"] == "lora" and record["config"]["lora_rank"] == 2
    assert record["stored_bytes"] == sum((out / f).stat().st_size for f in ("prompt.safetensors", "adapter_model.safetensors"))
    sidecar = json.loads((out / "lora.json").read_text())
    assert record["stored_parameters"] == 2 * 64 + sidecar["lora"]["parameters"] == record["trainable_parameters"]
    card = (out / "README.md").read_text()
    assert "## Low-rank adapters" in card and f"stored numbers: {record['stored_parameters']:,}" in card
    capsys.readouterr()
    assert main(["evaluate", "--prompt", str(out), "--data", str(sib200_dir), "--langs", "fra_Latn", "--quiet"]) == 0
    assert "fra_Latn" in capsys.readouterr().out
    texts = ["The team won the final match.", "Parliament voted on the new law."]
    tasks = TaskSet.load({"lora": str(out), "plain": str(plain)})
    [served] = tasks.score([Job(texts, ["lora", "plain"])])
    for name, folder in (("lora", out), ("plain", plain)):
        [expected], _, _ = predict(str(folder), texts, load=LoadOptions(), options=PredictOptions())
        assert served[name]["label"].tolist() == expected["label"].tolist()
        assert served[name]["probability"].tolist() == pytest.approx(expected["probability"].tolist(), abs=1e-5)
    listing = push(out, "me/lora-topics", dry_run=True)
    assert "adapter_model.safetensors" in str(listing) and "lora.json" in str(listing)
    push(out, "me/lora-topics", hub=str(tmp_path / "hub"))
    assert sorted(p.name for p in (tmp_path / "hub" / "me" / "lora-topics").iterdir()) == [
        "README.md", "adapter_model.safetensors", "lora.json", "per_class.csv", "prompt.safetensors", "results.csv",
        "summary.txt"]
    # a pushed sidecar names a local model by its folder's name only: loading it names the model
    pulled = xlspt.PromptClassifier.from_pretrained("me/lora-topics", str(tiny_model_dirs["gemma3"]), hub=tmp_path / "hub",
                                                    dtype="float32")
    assert type(pulled).__name__ == "LoraClassifier" and pulled.scores(texts).shape == (2, 7)
    assert main(["evaluate", "--prompt", str(out), "--prompt", str(plain), "--vote", "--data", str(sib200_dir),
                 "--langs", "fra_Latn", "--quiet"]) == 2
    assert "--vote joins prompts of one method" in capsys.readouterr().err


def test_a_study_fits_and_records_each_lora_run_on_its_own(sib200_dir, tmp_path):
    from xlspt.study.config import RunConfig
    from xlspt.study.runner import PlannedRun, _work, unit_key

    base = RunConfig(data=str(sib200_dir))
    configs = [base, base.replace(reparam_hidden=200), base.replace(method="lora"),
               base.replace(method="lora", reparam_hidden=200)]
    runs = [PlannedRun(c, f"run{i}", ["fra_Latn"], tmp_path / f"run{i}", None, "0") for i, c in enumerate(configs)]
    work = _work(runs)
    assert [[r.run_id for r in group] for _, group in work] == [["run0", "run1"], ["run2"], ["run3"]]
    assert unit_key(runs[0]) == unit_key(runs[1]) and unit_key(runs[2]) != unit_key(runs[3])
