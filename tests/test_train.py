"""Training, saving, loading and evaluating prompts on tiny models with real SIB-200 sentences."""

from __future__ import annotations

import pytest
import torch

import xlspt
from xlspt.artifact import PromptArtifact
from xlspt.data import sample_few_shot
from xlspt.engine import Engine, NaiveEngine, ReadoutConfig, SpecialTokens, encode_texts
from xlspt.errors import ConfigError
from xlspt.train import linear_warmup_schedule, validation_loss

FAST = dict(epochs=3, batch_size=4)


def _train(loaded, data, seed=0, reparam=None, **training):
    return xlspt.PromptClassifier.train(
        loaded, data, shots=2, prompt=xlspt.PromptConfig(length=3, reparam_hidden=reparam),
        training=xlspt.TrainConfig(seed=seed, **{**FAST, **training}), progress=False, recipe="study",
    )


@pytest.mark.parametrize("loss", ["vocabulary", "label-words"])
def test_training_lowers_the_loss_and_keeps_the_best_epoch(tiny, data, loss):
    clf = _train(tiny, data, epochs=4, lr=5e-2, loss=loss)
    history = clf.metadata.training.history
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    best = min(history, key=lambda h: h["val_loss"])
    assert clf.metadata.training.best_epoch == best["epoch"]
    examples = sample_few_shot(data, "eng_Latn", 2, seed=0)
    ids = encode_texts(tiny, examples.validation["text"].tolist(), 3)
    kept = validation_loss(NaiveEngine(tiny), clf.verbalizer, ids, examples.validation["label"].tolist(), clf.prompt, 8,
                           loss)
    assert kept == pytest.approx(best["val_loss"], rel=1e-5)


@pytest.mark.parametrize("words_per_class", [1, 2])
def test_the_label_word_loss_is_the_cross_entropy_over_the_classes(tiny_models, words_per_class):
    """Computed from the label words' rows of the head, it equals the class cross-entropy read off the full logits."""
    from xlspt.data.sib200 import CATEGORIES
    from xlspt.train import readout_loss_rows
    from xlspt.verbalizer import Verbalizer

    loaded = tiny_models["gemma3"]
    ids = tuple(range(10, 10 + words_per_class * len(CATEGORIES)))
    owner = tuple(i // words_per_class for i in range(len(ids)))
    verbalizer = Verbalizer(CATEGORIES, tuple(CATEGORIES), ids, owner)
    gold = [i % len(CATEGORIES) for i in range(9)]
    hidden = torch.randn(9, loaded.hidden_size, generator=torch.Generator().manual_seed(0)).to(loaded.dtype)
    hidden.requires_grad_(True)
    losses = readout_loss_rows(loaded, verbalizer, hidden, [CATEGORIES[g] for g in gold], "label-words")
    full = loaded.adapter.logits(loaded.model, hidden.detach()).float()
    classes = torch.stack([full[:, [t for t, c in zip(ids, owner) if c == k]].logsumexp(1)
                           for k in range(len(CATEGORIES))], dim=1)
    assert torch.allclose(losses, -classes.log_softmax(1)[range(9), gold], atol=1e-5)
    losses.sum().backward()
    assert hidden.grad is not None and torch.isfinite(hidden.grad).all() and hidden.grad.abs().sum() > 0


def test_a_step_budget_adds_epochs_to_a_small_sample(tiny, data):
    """14 examples in batches of 4 are 4 steps an epoch: a budget of 9 steps makes one epoch three."""
    assert xlspt.TrainConfig(epochs=1, batch_size=4, min_steps=9).epochs_for(14) == 3
    assert xlspt.TrainConfig(epochs=5, batch_size=4, min_steps=9).epochs_for(14) == 5  # epochs decide when larger
    assert xlspt.TrainConfig(epochs=2, batch_size=4).epochs_for(14) == 2
    clf = _train(tiny, data, epochs=1, min_steps=9)
    assert [h["epoch"] for h in clf.metadata.training.history] == [1, 2, 3]


def test_a_validation_loss_still_falling_at_the_end_is_reported(tiny, data):
    clf = _train(tiny, data, epochs=3)
    training = clf.metadata.training
    training.history = [{"epoch": e, "val_loss": v} for e, v in ((1, 3.0), (2, 2.0), (3, 1.0))]
    training.best_epoch = 3
    assert training.still_improving and "still falling at the last epoch" in clf.fit_summary()
    training.best_epoch = 2
    assert not training.still_improving and "still falling" not in clf.fit_summary()


def test_same_seed_same_prompt_other_seed_other_prompt(tiny_models, data):
    loaded = tiny_models["gemma3"]
    a, b, c = _train(loaded, data, seed=0), _train(loaded, data, seed=0), _train(loaded, data, seed=1)
    assert torch.equal(a.prompt, b.prompt)
    assert not torch.equal(a.prompt, c.prompt)


@pytest.mark.parametrize("warmup, total", [(14, 140), (0, 140), (3, 7)])
def test_learning_rate_schedule_is_the_reference_codes(warmup, total):
    from transformers import get_linear_schedule_with_warmup

    rates = []
    for make in (get_linear_schedule_with_warmup, linear_warmup_schedule):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=5e-3)
        scheduler = make(optimizer, warmup, total)
        seen = []
        for _ in range(total + 2):
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        rates.append(seen)
    assert rates[0] == rates[1]
    assert rates[1][-1] == 0.0 and max(rates[1]) == pytest.approx(5e-3)


@pytest.mark.parametrize("field, value", [
    ("max_length", 7), ("special_tokens", "none"), ("engine", "fast"), ("eval_batch_size", 0), ("epochs", 0), ("lr", 0.0),
    ("loss", "hinge"), ("min_steps", -1), ("patience", -1),
])
def test_train_config_refuses_a_bad_setting_naming_its_field(field, value):
    with pytest.raises(ConfigError) as error:
        xlspt.TrainConfig(**{field: value})
    assert error.value.field == field


def test_train_config_reads_out_as_its_readout_config_and_saves_plain_strings():
    config = xlspt.TrainConfig(max_length=64, special_tokens="reference", eval_batch_size=16, engine="naive")
    assert config.readout == ReadoutConfig(max_length=64, special_tokens=SpecialTokens.REFERENCE, batch_size=16,
                                           engine=Engine.NAIVE)
    assert config.to_dict()["engine"] == "naive" and config.to_dict()["special_tokens"] == "reference"
    with pytest.raises(ConfigError, match="cached needs a frozen model") as error:
        xlspt.TrainConfig(engine="cached", freeze_model=False)
    assert error.value.field == "engine"


def test_prompt_initialisation_is_uniform_in_half_range():
    prompt = xlspt.SoftPrompt(xlspt.PromptConfig(length=64), 128, generator=torch.Generator().manual_seed(0))
    weight = prompt.weight.detach()
    assert weight.min() >= -0.5 and weight.max() <= 0.5
    assert weight.min() < -0.45 and weight.max() > 0.45


def test_reparameterized_prompt_saves_its_network_and_reloads(tiny_models, data, tmp_path):
    loaded = tiny_models["xglm"]
    clf = _train(loaded, data, reparam=16)
    assert clf.soft_prompt.reparam is not None
    clf.save(tmp_path)
    artifact = PromptArtifact.load(tmp_path)
    assert {"reparam.input", "reparam.net.0.weight", "reparam.net.3.weight"} <= set(artifact.extra_tensors[0])
    rebuilt = artifact.soft_prompt()
    torch.testing.assert_close(rebuilt().detach(), clf.prompt)
    assert artifact.metadata.training.prompt_config.reparam_hidden == 16


def test_saved_prompt_reproduces_its_evaluation_exactly(tiny, data, tmp_path):
    clf = _train(tiny, data)
    langs = ["eng_Latn", "fra_Latn"]
    before = clf.evaluate(data, langs, progress=False)
    clf.save(tmp_path)
    again = xlspt.PromptClassifier.load(tmp_path, tiny)
    assert torch.equal(again.prompt, clf.prompt)
    after = again.evaluate(data, langs, progress=False)
    assert before.equals(after)
    assert list(after.columns) == ["language", "accuracy", "macro_f1", "n", "protocol"]
    assert after["n"].tolist() == [len(data.split(lang, "test")) for lang in langs]


def test_prompt_for_another_model_is_refused(tiny_models, data, tmp_path):
    clf = _train(tiny_models["bloom"], data)
    clf.save(tmp_path)
    with pytest.raises(xlspt.XlsptError, match="this prompt was made for"):
        xlspt.PromptClassifier.load(tmp_path, tiny_models["gemma3"])


def test_unfrozen_training_changes_the_model_and_is_not_saved_as_reusable(tiny_model_dirs, data, tmp_path):
    loaded = xlspt.load_model(str(tiny_model_dirs["llama"]), dtype="float32")
    before = loaded.model.get_input_embeddings().weight.clone()
    clf = _train(loaded, data, freeze_model=False, model_lr=1e-3)
    assert not torch.equal(before, loaded.model.get_input_embeddings().weight)
    assert not any(p.requires_grad for p in loaded.model.parameters())
    clf.save(tmp_path)
    with pytest.raises(xlspt.XlsptError, match="not saved"):
        xlspt.PromptClassifier.load(tmp_path, loaded)


def test_chunked_master_weights_train_bit_identically(tiny_model_dirs, data, monkeypatch):
    """bfloat16 training of the model too steps float32 master copies cut into chunks; the chunk size
    (here one that cuts tensors unevenly, and one that keeps them whole) changes nothing."""
    from xlspt.train.optimisation import MasterWeights

    trained = []
    for chunk in (7, 1 << 30):
        monkeypatch.setattr(MasterWeights, "CHUNK", chunk)
        loaded = xlspt.load_model(str(tiny_model_dirs["gemma3"]), dtype="bfloat16")
        clf = _train(loaded, data, freeze_model=False, model_lr=1e-3)
        trained.append((clf.prompt.clone(), {k: v.clone() for k, v in loaded.model.state_dict().items()}))
    (prompt_a, model_a), (prompt_b, model_b) = trained
    assert torch.equal(prompt_a, prompt_b)
    assert model_a.keys() == model_b.keys() and all(torch.equal(model_a[k], model_b[k]) for k in model_a)
    assert any(not torch.equal(v, w) for v, w in zip(model_a.values(), xlspt.load_model(
        str(tiny_model_dirs["gemma3"]), dtype="bfloat16").model.state_dict().values()))  # the model did train


def test_predict_returns_one_topic_per_text(tiny_models, data):
    clf = _train(tiny_models["gemma3"], data)
    labels = clf.predict(["The team won the match.", "Le parlement a voté la loi.", "x"])
    assert len(labels) == 3 and set(labels) <= set(xlspt.CATEGORIES)
    assert clf.predict([]) == []


def test_aggregate_gives_group_means_with_spread():
    import pandas as pd

    results = pd.DataFrame(
        {"language": ["eng_Latn", "fra_Latn", "swh_Latn"], "accuracy": [0.6, 0.4, 0.2], "macro_f1": [0.5, 0.3, 0.1], "n": 204}
    )
    groups = xlspt.aggregate(results)
    assert groups["all"]["accuracy"]["mean"] == pytest.approx(0.4)
    assert groups["transfer"]["accuracy"]["mean"] == pytest.approx(0.3)
    assert groups["all"]["accuracy"]["stderr"] == pytest.approx(0.2 / 3**0.5)
    assert groups["xglm_pretraining"]["accuracy"]["n_languages"] == 3
    assert groups["bloom_pretraining"]["accuracy"]["n_languages"] == 3
    assert "study_52" not in groups
    table = xlspt.format_results_table(results, groups)
    assert "Swahili" in table and "mean transfer (2)" in table


def test_training_resumes_from_a_saved_reparameterized_prompt(tiny_models, data, tmp_path):
    loaded = tiny_models["xglm"]
    first = _train(loaded, data, reparam=16, epochs=2)
    first.save(tmp_path)
    saved = PromptArtifact.load(tmp_path).soft_prompt()
    resumed = xlspt.PromptClassifier.train(
        loaded, data, shots=2, training=xlspt.TrainConfig(epochs=1, batch_size=4, lr=1e-9, warmup_ratio=0.0),
        initial=saved, progress=False, recipe="study",
    )
    assert resumed.soft_prompt.config.reparam_hidden == 16 and resumed.prompt.shape == first.prompt.shape
    torch.testing.assert_close(resumed.prompt, first.prompt, rtol=1e-4, atol=1e-4)  # a tiny lr barely moves it
    assert torch.equal(saved.weight, PromptArtifact.load(tmp_path).soft_prompt().weight)  # the input is not modified
