"""Model loading, adapters and the verbalizer."""

from __future__ import annotations

import pytest
import torch

import xlspt
from xlspt.models import adapter_for
from xlspt.verbalizer import Verbalizer, parse_label_words


def test_each_family_gets_its_adapter(tiny_models):
    assert {f: m.adapter.family for f, m in tiny_models.items()} == {
        "gemma3": "gemma3", "xglm": "xglm", "bloom": "bloom", "llama": "llama"
    }
    assert all(not p.requires_grad for m in tiny_models.values() for p in m.model.parameters())


def test_embedding_scale_is_applied_to_the_prompt_where_the_model_scales_tokens(tiny_models):
    prompt = torch.ones(2, 64)
    for family, loaded in tiny_models.items():
        out = loaded.adapter.embed_prompt(loaded.model, prompt)
        expected = 8.0 if family in ("gemma3", "xglm") else 1.0  # sqrt(64)
        torch.testing.assert_close(out, torch.full_like(prompt, expected))


def test_unsupported_architecture_is_a_clear_error(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)).save_pretrained(tmp_path)
    with pytest.raises(xlspt.XlsptError, match="architecture 'gpt2' is not supported"):
        xlspt.load_model(str(tmp_path))
    with pytest.raises(xlspt.XlsptError, match="not supported"):
        adapter_for("mamba")


@pytest.mark.parametrize("name", ["not-a-model", "./missing-dir", "missing.gguf"])
def test_unknown_model_is_a_clear_error(name):
    with pytest.raises(xlspt.XlsptError):
        xlspt.load_model(name)


def test_default_label_words_are_single_tokens_of_each_tiny_tokenizer(tiny):
    verbalizer = xlspt.build_verbalizer(tiny)
    assert len(set(verbalizer.token_ids)) == 7
    assert verbalizer.labels == xlspt.CATEGORIES


def test_multi_token_label_word_is_refused_unless_first_subtoken_is_allowed(tiny_models):
    tokenizer = tiny_models["xglm"].tokenizer
    words = dict(tiny_models["xglm"].adapter.label_words, sports="sports science")
    with pytest.raises(xlspt.XlsptError, match="not a single token"):
        Verbalizer.build(tokenizer, words)
    verbalizer = Verbalizer.build(tokenizer, words, allow_first_subtoken=True)
    assert verbalizer.token_ids[-1] == tokenizer("sports", add_special_tokens=False)["input_ids"][0]


def test_label_words_from_the_command_line():
    assert parse_label_words("a,b,c,d,e,f,g")["sports"] == "g"
    assert parse_label_words("sports=play,geography=earth") == {"sports": "play", "geography": "earth"}
    with pytest.raises(xlspt.XlsptError, match="needs 7 words"):
        parse_label_words("a,b")
    with pytest.raises(xlspt.XlsptError, match="unknown class"):
        parse_label_words("sport=play")


def test_the_python_api_and_the_command_line_load_models_in_the_same_dtype_by_default():
    import inspect

    from xlspt.study import RunConfig

    assert inspect.signature(xlspt.load_model).parameters["dtype"].default == RunConfig().dtype.value == "auto"


def test_the_bf16_probe_takes_the_fastest_product_of_each_dtype_in_turns(monkeypatch):
    """A burst of other work slows some products: the fastest of each dtype, measured in turns, still tells.
    Each product takes 1 tick in float32 and 0.5 in bfloat16, ten times as long during the burst (rounds 2 and 3)."""
    from xlspt.models import devices

    stamps, now = [], 0.0
    for i in range(24):  # float32 and bfloat16 in turns, 12 rounds
        seconds = (1.0 if i % 2 == 0 else 0.5) * (10 if i in (2, 3, 4, 5) else 1)
        stamps += [now, now + seconds]
        now += seconds
    ticks = iter(stamps)
    monkeypatch.setattr(devices.time, "perf_counter", lambda: next(ticks))
    assert devices._fastest_matmuls((torch.float32, torch.bfloat16), rounds=12) == [1.0, 0.5]
