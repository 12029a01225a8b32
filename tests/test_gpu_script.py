"""benchmarks/gpu_study.py: Gemma 3 270M's configuration, its tokenizer, and its refusal without a GPU.

The script itself runs on a GPU machine (or, with ``--allow-cpu``, as a smoke run of about a
minute); these checks are the fast parts.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_study.py"


@pytest.fixture(scope="module")
def gpu_study():
    spec = importlib.util.spec_from_file_location("gpu_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_study"] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("gpu_study", None)


def test_config_is_gemma3_270m(gpu_study):
    config = gpu_study.gemma3_config()
    assert (config.vocab_size, config.hidden_size, config.intermediate_size, config.num_hidden_layers) == (262144, 640, 2048, 18)
    assert (config.num_attention_heads, config.num_key_value_heads, config.head_dim) == (4, 1, 256)
    assert (config.sliding_window, config.max_position_embeddings, config.query_pre_attn_scalar) == (512, 32768, 256)
    assert [i for i, t in enumerate(config.layer_types) if t == "full_attention"] == [5, 11, 17]
    assert config.tie_word_embeddings and config.final_logit_softcapping is None
    rope = getattr(config, "rope_parameters", None)
    if rope:  # transformers 5
        assert rope["full_attention"]["rope_theta"] == 1e6 and rope["sliding_attention"]["rope_theta"] == 1e4
    assert gpu_study.layer_types(2) == ["sliding_attention", "full_attention"]


def test_tokenizer_keeps_label_words_and_cuts_words_into_pieces(gpu_study):
    tok = gpu_study.build_tokenizer(["The sports results of the politics of science.", "科学家说 travel health"], 1000)
    for word in gpu_study.LABEL_WORDS.values():
        assert len(tok(word, add_special_tokens=False)["input_ids"]) == 1, word
    pieces = tok.convert_ids_to_tokens(tok("The results 科学")["input_ids"])
    assert pieces == ["<bos>", "the", "res", "ult", "s", "科", "学"]
    assert [tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id] == [0, 1, 2, 3]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_refuses_to_run_without_cuda():
    result = subprocess.run([sys.executable, str(SCRIPT), "--json"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "error: no CUDA device" in result.stderr and "--allow-cpu" in result.stderr
    assert result.stdout == ""
