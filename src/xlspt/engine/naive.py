"""The naive forward pass: every step runs text and prompt through the whole model.

This is the reference path (and the only one when the model itself trains). Rows are
left-padded so that the prompt occupies the same last ``n`` columns in every row and
the read-out position is the last column; positions are counted per row from the
attention mask, so padding changes nothing.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..models.loading import LoadedModel
from .batching import left_pad, positions_from_mask


class NaiveEngine:
    """Computes the hidden state at the read-out position (the last prompt slot) with a full pass."""

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded

    def prepare(self, token_ids: Sequence[Sequence[int]]) -> list[Sequence[int]]:
        """Nothing to precompute: the full pass starts from the token ids."""
        return list(token_ids)

    def readout_hidden(self, token_ids: Sequence[Sequence[int]], prompt: torch.Tensor) -> torch.Tensor:
        """Hidden state after the final norm at the last prompt slot.

        Args:
            token_ids: ``B`` token-id lists (text with its BOS, no prompt).
            prompt: ``[n, d]`` prompt matrix in embedding-table space.

        Returns:
            ``[B, d]`` hidden states; differentiable w.r.t. ``prompt`` (and the model, if it trains).
        """
        loaded = self.loaded
        model, adapter = loaded.model, loaded.adapter
        device = loaded.device
        ids, text_mask = left_pad(token_ids, loaded.tokenizer.pad_token_id)
        ids, text_mask = ids.to(device), text_mask.to(device)
        batch = ids.shape[0]
        text = adapter.embed_tokens(model, ids)
        slots = adapter.embed_prompt(model, prompt.to(device=device, dtype=text.dtype))
        inputs = torch.cat([text, slots.unsqueeze(0).expand(batch, -1, -1)], dim=1)
        mask = torch.cat([text_mask, text_mask.new_ones(batch, prompt.shape[0])], dim=1)
        kwargs = {}
        if adapter.takes_position_ids:
            kwargs["position_ids"] = positions_from_mask(mask)
        out = adapter.base_model(model)(inputs_embeds=inputs, attention_mask=mask, use_cache=False, **kwargs)
        return out.last_hidden_state[:, -1]
