"""The forward engine on tiny random-weight Gemma 3, XGLM, BLOOM and Llama models."""

from __future__ import annotations

import torch

from xlspt.engine import NaiveEngine, encode_texts

TEXTS = [
    "The science of travel is a topic for health.",
    "Sports and politics",
    "Earth is the third planet from the sun and the only one known to hold life, said the scientists.",
]


def _full_model_last(loaded, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    base = loaded.adapter.base_model(loaded.model)
    input_ids = torch.tensor([ids])
    hidden = base(input_ids=input_ids).last_hidden_state[0, -1]
    logits = loaded.model(input_ids=input_ids).logits[0, -1]
    return hidden, logits


@torch.no_grad()
def test_prompt_row_equal_to_token_embedding_reproduces_the_token(tiny):
    """design.md: a prompt row equal to the table row of token t gives exactly the model's output for t."""
    ids = encode_texts(tiny, [TEXTS[0]], prompt_length=2)[0]
    table = tiny.model.get_input_embeddings().weight
    t1, t2 = 17, 42
    prompt = table[[t1, t2]].clone()
    engine = NaiveEngine(tiny)
    hidden = engine.readout_hidden([ids], prompt)[0]
    expected_hidden, expected_logits = _full_model_last(tiny, ids + [t1, t2])
    torch.testing.assert_close(hidden, expected_hidden, rtol=1e-5, atol=1e-5)
    logits = tiny.adapter.logits(tiny.model, hidden[None])[0]
    torch.testing.assert_close(logits, expected_logits, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_label_word_logits_are_the_full_logits_at_those_rows(tiny):
    ids = encode_texts(tiny, TEXTS, prompt_length=3)
    prompt = torch.empty(3, tiny.hidden_size).uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(0))
    hidden = NaiveEngine(tiny).readout_hidden(ids, prompt)
    rows = torch.tensor([5, 9, 11])
    full = tiny.adapter.logits(tiny.model, hidden)
    torch.testing.assert_close(tiny.adapter.logits(tiny.model, hidden, rows), full[:, rows])


@torch.no_grad()
def test_left_padding_gives_the_same_read_out_as_one_text_at_a_time(tiny):
    ids = encode_texts(tiny, TEXTS, prompt_length=4)
    assert len({len(x) for x in ids}) == len(ids), "texts of different lengths exercise padding"
    prompt = torch.empty(4, tiny.hidden_size).uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(1))
    engine = NaiveEngine(tiny)
    batched = engine.readout_hidden(ids, prompt)
    single = torch.cat([engine.readout_hidden([x], prompt) for x in ids])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-5)


def test_gradient_reaches_the_prompt_only(tiny):
    ids = encode_texts(tiny, TEXTS[:2], prompt_length=2)
    prompt = torch.zeros(2, tiny.hidden_size, requires_grad=True)
    hidden = NaiveEngine(tiny).readout_hidden(ids, prompt)
    tiny.adapter.logits(tiny.model, hidden).logsumexp(-1).sum().backward()
    assert prompt.grad is not None and prompt.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny.model.parameters())


def test_text_is_truncated_never_the_prompt(tiny):
    long_text = " ".join(["science"] * 500)
    ids = encode_texts(tiny, [long_text], prompt_length=10, max_length=64)[0]
    assert len(ids) + 10 + 1 == 64
    if tiny.adapter.requires_bos:
        assert ids[0] == tiny.tokenizer.bos_token_id


def test_bos_is_prepended_for_families_that_need_it(tiny):
    ids = encode_texts(tiny, ["sports"], prompt_length=1)[0]
    assert (ids[0] == tiny.tokenizer.bos_token_id) == (tiny.model_type != "bloom")


@torch.no_grad()
def test_rounding_batch_widths_up_changes_no_read_out(tiny, monkeypatch):
    """Widths are rounded to a multiple of PAD_MULTIPLE (a bounded set of shapes); the extra padding is masked."""
    from xlspt.engine import CachedTextEngine, batching

    ids = encode_texts(tiny, TEXTS, prompt_length=3)
    assert max(map(len, ids)) % batching.PAD_MULTIPLE, "the longest text needs rounding up"
    assert batching.left_pad(ids, 0)[0].shape[1] % batching.PAD_MULTIPLE == 0
    prompt = torch.empty(3, tiny.hidden_size).uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(2))
    cached = CachedTextEngine(tiny)
    rounded = NaiveEngine(tiny).readout_hidden(ids, prompt), cached.readout_hidden(cached.encode(ids), prompt)
    monkeypatch.setattr(batching, "PAD_MULTIPLE", 1)
    assert batching.left_pad(ids, 0)[0].shape[1] == max(map(len, ids))
    exact = NaiveEngine(tiny).readout_hidden(ids, prompt), cached.readout_hidden(cached.encode(ids), prompt)
    for a, b in zip(rounded, exact):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
