"""The cached-text engine gives the naive full pass's loss, gradients and predictions.

Run for every tiny architecture (rotary Gemma 3 with a sliding window shorter than the
texts, sinusoidal XGLM, ALiBi BLOOM, rotary Llama), with texts of different lengths (left
padding), with and without reparameterization.
"""

from __future__ import annotations

import pytest
import torch

import xlspt
from xlspt.engine import NaiveEngine, encode_texts
from xlspt.engine.cached import CachedTextEngine

TEXTS = [
    "The science of travel is a topic for health.",
    "Sports and politics",
    "Earth is the third planet from the sun and the only one known to hold life, said the scientists.",
    "The government said the health of the players is good.",
]


def _loss_and_grads(engine_hidden, loaded, prompt_module, targets):
    prompt_module.zero_grad(set_to_none=True)
    hidden = engine_hidden(prompt_module())
    loss = torch.nn.functional.cross_entropy(loaded.adapter.logits(loaded.model, hidden), targets)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in prompt_module.parameters()]


@pytest.mark.parametrize("reparam", [None, 16])
def test_cached_path_matches_naive_loss_and_gradients(tiny, reparam):
    n = 3
    ids = encode_texts(tiny, TEXTS, n)
    assert len({len(x) for x in ids}) == len(ids)
    torch.manual_seed(0)
    prompt = xlspt.SoftPrompt(xlspt.PromptConfig(length=n, reparam_hidden=reparam), tiny.hidden_size,
                              generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([5, 9, 11, 13])
    naive = NaiveEngine(tiny)
    cached = CachedTextEngine(tiny)
    states = cached.encode(ids)
    loss_a, grads_a = _loss_and_grads(lambda p: naive.readout_hidden(ids, p), tiny, prompt, targets)
    loss_b, grads_b = _loss_and_grads(lambda p: cached.readout_hidden(states, p), tiny, prompt, targets)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-6, atol=1e-6)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_cached_states_are_independent_of_batch_composition(tiny):
    ids = encode_texts(tiny, TEXTS, 2)
    engine = CachedTextEngine(tiny, encode_batch_size=4)
    together = engine.encode(ids)
    alone = [engine.encode([x])[0] for x in ids]
    prompt = torch.empty(2, tiny.hidden_size).uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(3))
    order = [2, 0, 3, 1]  # a reshuffled batch, as a new epoch draws
    a = engine.readout_hidden([together[i] for i in order], prompt)
    b = engine.readout_hidden([alone[i] for i in order], prompt)
    c = NaiveEngine(tiny).readout_hidden([ids[i] for i in order], prompt)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-5)


def test_training_with_the_cached_engine_gives_the_naive_prompt(tiny, data):
    def train(engine):
        return xlspt.PromptClassifier.train(
            tiny, data, shots=2, prompt=xlspt.PromptConfig(length=2),
            training=xlspt.TrainConfig(epochs=2, batch_size=4, engine=engine), progress=False, recipe="study",
        )

    naive, cached = train("naive"), train("cached")
    torch.testing.assert_close(cached.prompt, naive.prompt, rtol=1e-4, atol=1e-5)
    for a, b in zip(naive.metadata.training.history, cached.metadata.training.history):
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-5)


def test_many_prompts_of_different_lengths_score_like_one_at_a_time(tiny, data):
    from xlspt.engine import ReadoutConfig
    from xlspt.evaluate import label_logits

    texts = data.split("fra_Latn", "test")["text"].tolist()[:40]
    texts.append(" ".join(["science"] * 300))  # truncated differently for each prompt length
    generator = torch.Generator().manual_seed(5)
    prompts = [torch.empty(n, tiny.hidden_size).uniform_(-0.5, 0.5, generator=generator) for n in (1, 4, 16, 4)]
    verbalizer = xlspt.build_verbalizer(tiny)
    together = label_logits(tiny, verbalizer, prompts, texts, ReadoutConfig(batch_size=8, max_length=32))
    assert together.shape == (4, len(texts), 7)
    for j, prompt in enumerate(prompts):
        alone = label_logits(tiny, verbalizer, prompt, texts, ReadoutConfig(batch_size=8, max_length=32, engine="naive"))
        torch.testing.assert_close(together[j], alone, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_prompts_read_side_by_side_on_their_own_texts_equal_each_alone(tiny):
    """``readout_hidden_paired``: prompt p reads rows p*B..p*B+B-1, as it would read those texts alone."""
    ids = encode_texts(tiny, TEXTS * 3, 3)
    cached = CachedTextEngine(tiny)
    states = cached.encode(ids)
    prompts = torch.empty(3, 3, tiny.hidden_size).uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(4))
    batch = len(ids) // 3
    paired = cached.readout_hidden_paired(cached.stack(states[: 3 * batch]), prompts)
    assert paired.shape == (3, batch, tiny.hidden_size)
    for p in range(3):
        rows = states[p * batch : (p + 1) * batch]
        torch.testing.assert_close(paired[p], cached.readout_hidden(rows, prompts[p]), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="do not split evenly"):
        cached.readout_hidden_paired(cached.stack(states[:4]), prompts)


@torch.no_grad()
def test_packed_prompts_equal_prompts_side_by_side(tiny):
    """Packing P prompts into each text's row (block-diagonal mask) changes nothing but the work."""
    ids = encode_texts(tiny, TEXTS * 2, 3)
    cached = CachedTextEngine(tiny)
    states = cached.encode_batch(ids)
    prompts = torch.empty(4, 3, tiny.hidden_size).uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(2))
    together = cached.readout_hidden_many(states, prompts)
    assert together.shape == (4, len(ids), tiny.hidden_size)
    for p in range(4):
        alone = cached.readout_hidden(states, prompts[p])
        torch.testing.assert_close(together[p], alone, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(together[p], NaiveEngine(tiny).readout_hidden(ids, prompts[p]), rtol=1e-5, atol=1e-5)


def test_dtype_choice():
    from xlspt.models import resolve_dtype

    assert resolve_dtype("float32") is torch.float32
    assert resolve_dtype("bfloat16") is torch.bfloat16
    assert resolve_dtype("auto", "cpu") in (torch.float32, torch.bfloat16)
    with pytest.raises(xlspt.XlsptError, match="unknown --dtype"):
        resolve_dtype("float8")


def test_bfloat16_model_trains_and_predicts(tiny_model_dirs, data):
    loaded = xlspt.load_model(str(tiny_model_dirs["gemma3"]), dtype="bfloat16")
    assert loaded.dtype is torch.bfloat16
    clf = xlspt.PromptClassifier.train(loaded, data, shots=2, prompt=xlspt.PromptConfig(length=2),
                                       training=xlspt.TrainConfig(epochs=2, batch_size=4), progress=False, recipe="study")
    assert clf.prompt.dtype is torch.float32 and clf.metadata.dtype == "bfloat16"
    assert set(clf.predict(["The team won.", "Parliament voted."])) <= set(xlspt.CATEGORIES)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_head_cross_entropy_matches_autograd(tiny_models, dtype):
    from xlspt.engine.readout import _FusedHeadCrossEntropy

    weight = torch.randn(20000, 64, generator=torch.Generator().manual_seed(0)).to(dtype)  # several chunks
    hidden = torch.randn(5, 64, generator=torch.Generator().manual_seed(1)).to(dtype).requires_grad_()
    targets = torch.tensor([3, 19999, 8192, 0, 77])
    # The ground truth in float32 from the same (possibly bf16-rounded) values.
    exact_hidden = hidden.detach().float().requires_grad_()
    expected = torch.nn.functional.cross_entropy(exact_hidden @ weight.float().T, targets)
    (expected_grad,) = torch.autograd.grad(expected, exact_hidden)
    loss = _FusedHeadCrossEntropy.apply(hidden, weight, targets).mean()  # per-row losses
    (grad,) = torch.autograd.grad(loss * 3.0, hidden)
    assert grad.dtype == dtype
    # bfloat16 keeps 8 bits of mantissa: about 0.4% per rounding.
    tol = dict(rtol=1e-5, atol=1e-6) if dtype is torch.float32 else dict(rtol=3e-2, atol=5e-3)
    torch.testing.assert_close(loss, expected, **tol)
    torch.testing.assert_close(grad.float(), 3.0 * expected_grad.float(), **tol)


@pytest.mark.parametrize("family", ["bloom", "gemma3"])  # prompts side by side, and packed
def test_stored_text_states_are_reused_and_give_the_same_logits(tiny_models, data, tmp_path, monkeypatch, family):
    from xlspt.engine.cached import CachedTextEngine
    from xlspt.engine.store import TextStateStore
    from xlspt.engine import ReadoutConfig
    from xlspt.evaluate import label_logits

    loaded = tiny_models[family]
    verbalizer = xlspt.build_verbalizer(loaded)
    texts = data.split("swh_Latn", "test")["text"].tolist()[:40]
    batches = -(-len(texts) // 16)
    assert batches > 1
    prompts = [torch.empty(3, loaded.hidden_size).uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(s)) for s in (0, 1)]
    expected = label_logits(loaded, verbalizer, prompts, texts, ReadoutConfig(batch_size=16, engine="naive"))
    first = TextStateStore(loaded, tmp_path / "states")
    computed = label_logits(loaded, verbalizer, prompts, texts, ReadoutConfig(batch_size=16), store=first)
    assert (first.hits, first.misses) == (0, batches) and len(list((tmp_path / "states").iterdir())) == batches

    def no_text_pass(*args, **kwargs):
        raise AssertionError("the text pass ran although its states were stored")

    monkeypatch.setattr(CachedTextEngine, "encode_batch", no_text_pass)
    second = TextStateStore(loaded, tmp_path / "states")
    reused = label_logits(loaded, verbalizer, prompts, texts, ReadoutConfig(batch_size=16), store=second)
    assert (second.hits, second.misses) == (batches, 0)
    torch.testing.assert_close(computed, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(reused, computed, rtol=0, atol=0)
