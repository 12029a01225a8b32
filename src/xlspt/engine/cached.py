"""The cached-text engine: text keys and values are computed once, prompt steps run ``n`` positions.

The prompt is a suffix and the model is causal and frozen, so the keys and values of the
text positions do not depend on the prompt: they are the same at every step, every epoch,
and for every prompt scored on the same sentences. :meth:`CachedTextEngine.encode` runs the
text once; :meth:`CachedTextEngine.readout_hidden` then runs only the prompt positions,
attending to the cached text, forward and backward.

Rows are left-padded exactly as in :class:`~xlspt.engine.naive.NaiveEngine`, so the key
indices, per-row positions, sliding windows and ALiBi distances are the same as in the full
pass, and so are the loss, gradients and predictions (tested for every architecture).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Sequence

import torch

from ..models.loading import LoadedModel
from .batching import batches_by_length, left_pad


@dataclass
class TextStates:
    """Per-layer keys and values of one text (no padding).

    Attributes:
        keys: one ``[kv_heads, length, head_dim]`` tensor per layer.
        values: same shapes as ``keys``.
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    @property
    def length(self) -> int:
        return int(self.keys[0].shape[1])

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))


def _cache_kwarg(base) -> str:
    params = inspect.signature(base.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


class CachedTextEngine:
    """Reads out the hidden state at the last prompt slot from cached text states."""

    def __init__(self, loaded: LoadedModel, encode_batch_size: int = 32):
        from transformers import DynamicCache

        self.loaded = loaded
        self.encode_batch_size = encode_batch_size
        self._cache_cls = DynamicCache
        self._base = loaded.adapter.base_model(loaded.model)
        self._cache_name = _cache_kwarg(self._base)

    def prepare(self, token_ids: Sequence[Sequence[int]]) -> list[TextStates]:
        """The engine-specific input of :meth:`readout_hidden`: the texts' cached states."""
        return self.encode(token_ids)

    @torch.no_grad()
    def encode(self, token_ids: Sequence[Sequence[int]]) -> list[TextStates]:
        """Run each text through the model once and keep its keys and values."""
        loaded = self.loaded
        device = loaded.device
        states: list[TextStates | None] = [None] * len(token_ids)
        for batch in batches_by_length([len(t) for t in token_ids], self.encode_batch_size):
            ids, mask = left_pad([token_ids[i] for i in batch], loaded.tokenizer.pad_token_id)
            ids, mask = ids.to(device), mask.to(device)
            cache = self._cache_cls()
            kwargs = {self._cache_name: cache}
            if loaded.adapter.takes_position_ids:
                kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
            embeds = loaded.adapter.embed_tokens(loaded.model, ids)
            self._base(inputs_embeds=embeds, attention_mask=mask, use_cache=True, **kwargs)
            layers = [(layer.keys, layer.values) for layer in cache.layers]
            width = ids.shape[1]
            for row, index in enumerate(batch):
                start = width - len(token_ids[index])
                states[index] = TextStates(
                    keys=[k[row, :, start:].clone() for k, _ in layers],
                    values=[v[row, :, start:].clone() for _, v in layers],
                )
        return states  # type: ignore[return-value]

    def readout_hidden(self, states: Sequence[TextStates], prompt: torch.Tensor) -> torch.Tensor:
        """``[B, d]`` hidden states at the last prompt slot for ``B`` cached texts and one ``[n, d]`` prompt."""
        loaded = self.loaded
        device = loaded.device
        batch, n = len(states), int(prompt.shape[0])
        lengths = torch.tensor([s.length for s in states], device=device)
        width = int(lengths.max())
        layers = []
        for layer in range(len(states[0].keys)):
            heads, _, head_dim = states[0].keys[layer].shape
            dtype = states[0].keys[layer].dtype
            k = torch.zeros(batch, heads, width, head_dim, dtype=dtype, device=device)
            v = torch.zeros_like(k)
            for row, s in enumerate(states):
                k[row, :, width - s.length :] = s.keys[layer]
                v[row, :, width - s.length :] = s.values[layer]
            layers.append((k, v))
        columns = torch.arange(width, device=device)
        text_mask = (columns[None, :] >= (width - lengths)[:, None]).long()
        mask = torch.cat([text_mask, text_mask.new_ones(batch, n)], dim=1)
        slots = loaded.adapter.embed_prompt(loaded.model, prompt.to(device=device, dtype=k.dtype))
        kwargs = {self._cache_name: self._cache_cls(ddp_cache_data=layers)}
        if loaded.adapter.takes_position_ids:
            kwargs["position_ids"] = lengths[:, None] + torch.arange(n, device=device)[None, :]
        out = self._base(
            inputs_embeds=slots.unsqueeze(0).expand(batch, -1, -1), attention_mask=mask, use_cache=True, **kwargs
        )
        return out.last_hidden_state[:, -1]
