"""Architecture adapters: everything that differs between model families, in one place each.

A soft prompt stands in for token embeddings, so it must receive whatever the model
does to the rows of its embedding table before the first layer. The families differ:

============  ==========================================  ==================  =========
family        embedding treatment                          positions           BOS
============  ==========================================  ==================  =========
gemma3        table row * sqrt(d) (inside the embedding)   rotary              required
xglm          table row * sqrt(d) (inside the embedding)   sinusoidal, ids     ``</s>``
bloom         LayerNorm over inputs_embeds (inside model)  ALiBi from mask     none
llama, qwen2  none                                         rotary              tokenizer
============  ==========================================  ==================  =========

The forward engine only talks to a model through :class:`ArchitectureAdapter`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import XlsptError


@dataclass(frozen=True)
class ArchitectureAdapter:
    """How to feed embeddings to, and read logits from, one family of causal LMs.

    Attributes:
        family: short family name, also the key of the default label words.
        model_types: the ``config.model_type`` values this adapter handles.
        takes_position_ids: whether the base model reads ``position_ids`` (False for ALiBi models,
            which derive positions from the attention mask).
        requires_bos: prepend the tokenizer's BOS token when its template does not.
        label_words: default label word per SIB-200 category, each a single token of the family's
            tokenizer as written (a leading space is part of the word).
        lora_targets: the names of the linear layers low-rank adapters go on by default.
    """

    family: str
    model_types: tuple[str, ...]
    takes_position_ids: bool = True
    requires_bos: bool = False
    label_words: dict[str, str] = field(default_factory=dict)
    #: the attention projections low-rank adapters go on by default (LoRA's usual query and value)
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")

    def base_model(self, model: nn.Module) -> nn.Module:
        """The decoder stack without the LM head (returns ``last_hidden_state`` after the final norm)."""
        return model.base_model

    def embed_tokens(self, model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
        """``[B, L] -> [B, L, d]``: what the model itself feeds its decoder for these tokens."""
        return model.get_input_embeddings()(input_ids)

    def embed_prompt(self, model: nn.Module, prompt: torch.Tensor) -> torch.Tensor:
        """``[n, d] -> [n, d]``: give prompt rows the treatment table rows get inside the embedding module."""
        scale = getattr(model.get_input_embeddings(), "embed_scale", None)
        if scale is None:
            return prompt
        if isinstance(scale, torch.Tensor):
            scale = scale.to(device=prompt.device, dtype=prompt.dtype)
        return prompt * scale

    def logits(self, model: nn.Module, hidden: torch.Tensor, token_ids: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, d] -> [B, V]`` (or ``[B, len(token_ids)]``): the LM head at the read-out position only."""
        head = model.get_output_embeddings()
        weight = head.weight if token_ids is None else head.weight[token_ids]
        bias = getattr(head, "bias", None)
        if bias is not None and token_ids is not None:
            bias = bias[token_ids]
        logits = nn.functional.linear(hidden.to(weight.dtype), weight, bias)
        cap = getattr(model.config, "final_logit_softcapping", None)
        if cap is not None:
            logits = torch.tanh(logits / cap) * cap
        return logits


_XGLM_WORDS = {
    "geography": "earth",
    "science/technology": "science",
    "entertainment": "entertainment",
    "politics": "politics",
    "health": "health",
    "travel": "travel",
    "sports": "sports",
}
_BLOOM_WORDS = {
    "geography": "earth",
    "science/technology": "science",
    "entertainment": "fun",
    "politics": "government",
    "health": "health",
    "travel": "travel",
    "sports": "play",
}
# Gemma's tokenizer adds no dummy prefix, so the mid-sentence form of a word carries its space;
# " geography" is one token where "geography" is two.
_GEMMA3_WORDS = {
    "geography": " geography",
    "science/technology": " science",
    "entertainment": " entertainment",
    "politics": " politics",
    "health": " health",
    "travel": " travel",
    "sports": " sports",
}

ADAPTERS: tuple[ArchitectureAdapter, ...] = (
    ArchitectureAdapter("gemma3", ("gemma3_text",), requires_bos=True, label_words=_GEMMA3_WORDS),
    ArchitectureAdapter("xglm", ("xglm",), label_words=_XGLM_WORDS),
    ArchitectureAdapter("bloom", ("bloom",), takes_position_ids=False, label_words=_BLOOM_WORDS,
                        lora_targets=("query_key_value",)),
    ArchitectureAdapter("llama", ("llama", "qwen2"), label_words=_XGLM_WORDS),
)


def supported_model_types() -> list[str]:
    return sorted(t for a in ADAPTERS for t in a.model_types)


def adapter_for(model_type: str) -> ArchitectureAdapter:
    """The adapter for ``config.model_type``; a clear error for an architecture not handled."""
    for adapter in ADAPTERS:
        if model_type in adapter.model_types:
            return adapter
    raise XlsptError(
        f"architecture {model_type!r} is not supported yet: xlspt handles {', '.join(supported_model_types())} "
        "(its embedding treatment must be known so that a soft prompt can stand in for tokens)"
    )
