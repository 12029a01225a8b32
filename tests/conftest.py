"""Shared fixtures: SIB-200 data, and tiny random-weight models.

Two kinds of data. ``sib200_dir`` and ``data`` are the excerpt committed in ``tests/fixtures/sib200-excerpt``
(twelve languages, every topic; English's train and dev splits whole), so that the fast tests run in any clone.
``full_sib200_dir`` and ``full_data`` are the full SIB-200 data, at ``$XLSPT_TEST_DATA`` or else
``../shared/sib200`` beside the clone; tests that need it (the slow ones, and those that check facts of the full
data) skip with a reason that says how to get it.

The tiny models (Gemma 3, XGLM, BLOOM, Llama) are built from their configs with a small word-level tokenizer
whose vocabulary is committed (``tests/fixtures/tiny-vocabulary.txt``), saved to a temporary directory, and
loaded through ``xlspt.load_model(path)``: the same code path as a real local model.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).resolve().parent / "fixtures"
#: The committed SIB-200 excerpt (FLORES-200 sentences, CC BY-SA 4.0: ``tests/fixtures/sib200-excerpt/README.md``).
EXCERPT = FIXTURES / "sib200-excerpt"
#: The tiny models' vocabulary, one word a line.
VOCABULARY = FIXTURES / "tiny-vocabulary.txt"
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
#: The full SIB-200 data.
SIB200 = Path(os.environ.get("XLSPT_TEST_DATA") or SHARED / "sib200")
#: Why a test that needs the full data skips, and how to get it.
FULL_DATA_REASON = ("needs the full SIB-200 data, and there is none at {where}: get it with `hf download Davlan/sib200 "
                    "--repo-type dataset --local-dir sib200` and set XLSPT_TEST_DATA=sib200/data (README, Tests)")
TINY_FAMILIES = ("gemma3", "xglm", "bloom", "llama")


@pytest.fixture(scope="session")
def sib200_dir() -> Path:
    """The committed SIB-200 excerpt, in SIB-200's own layout."""
    return EXCERPT


@pytest.fixture(scope="session")
def data(sib200_dir):
    import xlspt

    return xlspt.Sib200.resolve(sib200_dir)


@pytest.fixture(scope="session")
def full_sib200_dir() -> Path:
    """The full SIB-200 data; the test skips, saying how to get it, where there is none."""
    if not (SIB200 / "eng_Latn" / "train.tsv").is_file():
        pytest.skip(FULL_DATA_REASON.format(where=SIB200))
    return SIB200


@pytest.fixture(scope="session")
def full_data(full_sib200_dir):
    import xlspt

    return xlspt.Sib200.resolve(full_sib200_dir)


@pytest.fixture(autouse=True, scope="session")
def _quiet_tokenizers():
    """The fast tokenizers warn about forked processes (the CLI test forks one) unless told not to."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    yield


def tiny_vocabulary() -> list[str]:
    """The committed vocabulary of the tiny models (``tests/fixtures/make_sib200_excerpt.py`` wrote it from the
    data): the artifact fixtures' saved scores hold for the tokenizer it gives, word for word and in order."""
    return VOCABULARY.read_text(encoding="utf-8").split("\n")[:-1]


def build_tokenizer(vocabulary: list[str], add_bos: bool):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<bos>", "<eos>", "<unk>"]
    vocab = {token: i for i, token in enumerate(specials + [w for w in vocabulary if w not in specials])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )


def build_tiny_model(family: str, vocab_size: int):
    from transformers import (
        BloomConfig,
        BloomForCausalLM,
        Gemma3ForCausalLM,
        Gemma3TextConfig,
        LlamaConfig,
        LlamaForCausalLM,
        XGLMConfig,
        XGLMForCausalLM,
    )

    ids = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)
    if family == "gemma3":
        config = Gemma3TextConfig(
            vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
            num_attention_heads=4, num_key_value_heads=1, head_dim=16, max_position_embeddings=512,
            sliding_window=8, layer_types=["sliding_attention", "sliding_attention", "full_attention"],
            query_pre_attn_scalar=16, **ids,
        )
        return Gemma3ForCausalLM(config)
    if family == "xglm":
        config = XGLMConfig(
            vocab_size=vocab_size, d_model=64, ffn_dim=128, num_layers=2, attention_heads=4,
            max_position_embeddings=512, scale_embedding=True, dropout=0.0, attention_dropout=0.0,
            activation_dropout=0.0, **ids,
        )
        return XGLMForCausalLM(config)
    if family == "bloom":
        config = BloomConfig(vocab_size=vocab_size, hidden_size=64, n_layer=2, n_head=4, **ids)
        return BloomForCausalLM(config)
    if family == "llama":
        config = LlamaConfig(
            vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, **ids,
        )
        return LlamaForCausalLM(config)
    raise ValueError(family)


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory) -> dict[str, Path]:
    """One saved tiny model directory per family (weights seeded, so every run builds the same models)."""
    vocabulary = tiny_vocabulary()
    dirs = {}
    for i, family in enumerate(TINY_FAMILIES):
        torch.manual_seed(1234 + i)
        tokenizer = build_tokenizer(vocabulary, add_bos=family in ("gemma3", "xglm", "llama"))
        model = build_tiny_model(family, len(tokenizer))
        directory = tmp_path_factory.mktemp(f"tiny-{family}")
        model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
        dirs[family] = directory
    return dirs


@pytest.fixture(scope="session")
def tiny_models(tiny_model_dirs):
    import xlspt

    return {family: xlspt.load_model(str(path), dtype="float32") for family, path in tiny_model_dirs.items()}


@pytest.fixture(params=TINY_FAMILIES)
def tiny(request, tiny_models):
    return tiny_models[request.param]


@pytest.fixture
def diverging(monkeypatch):
    """The training loss turns NaN from the third training step on (epoch 2 with 14 examples and batch 8):
    a best epoch exists before the divergence."""
    from xlspt.train import loop as train

    original = train._losses
    calls = {"train": 0}

    def losses(*args):
        out = original(*args)
        if out.requires_grad:  # training steps; validation runs under no_grad
            calls["train"] += 1
            if calls["train"] >= 3:
                return out * float("nan")
        return out

    monkeypatch.setattr(train, "_losses", losses)
    return calls
