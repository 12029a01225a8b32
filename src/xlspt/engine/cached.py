"""The cached-text engine: text keys and values are computed once, prompt steps run ``n`` positions.

The prompt is a suffix and the model is causal and frozen, so the keys and values of the
text positions do not depend on the prompt: they are the same at every step, every epoch,
and for every prompt scored on the same sentences. :meth:`CachedTextEngine.encode` runs the
text once; :meth:`CachedTextEngine.readout_hidden` then runs only the prompt positions,
attending to the cached text, forward and backward.

Rows are left-padded exactly as in :class:`~xlspt.engine.naive.NaiveEngine`, so the key
indices, per-row positions, sliding windows and ALiBi distances are the same as in the full
pass, and so are the loss, gradients and predictions (tested for every architecture).

Several prompts on the same texts (:meth:`CachedTextEngine.readout_hidden_many`) are packed
one after another into each text's row where the model takes explicit positions: a
block-diagonal mask lets each prompt see the text and itself only, at the positions it
would have alone, so the text's keys and values are shared instead of copied per prompt.
ALiBi models (BLOOM), whose distances come from the mask, run the prompts side by side.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Sequence

import torch

from ..models.loading import LoadedModel
from .batching import batches_by_length, left_pad, padded_width, positions_from_mask


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

    def prefix(self, length: int) -> "TextStates":
        """The states of the text's first ``length`` tokens (causal: truncating the text gives exactly these)."""
        if length >= self.length:
            return self
        return TextStates(keys=[k[:, :length] for k in self.keys], values=[v[:, :length] for v in self.values])


@dataclass
class BatchStates:
    """Keys and values of a left-padded batch of texts, as :meth:`CachedTextEngine.encode_batch` made them.

    Attributes:
        keys: one ``[B, kv_heads, width, head_dim]`` tensor per layer (left-padded).
        values: same shapes as ``keys``.
        lengths: ``[B]`` number of real (unpadded) positions of each row.
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    lengths: torch.Tensor

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def rows(self) -> list[TextStates]:
        width = self.keys[0].shape[2]
        return [
            TextStates(
                keys=[k[row, :, width - length :].clone() for k in self.keys],
                values=[v[row, :, width - length :].clone() for v in self.values],
            )
            for row, length in enumerate(self.lengths.tolist())
        ]


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
    def encode_batch(self, token_ids: Sequence[Sequence[int]]) -> BatchStates:
        """Run one batch of texts through the model (left-padded) and keep their keys and values."""
        loaded = self.loaded
        ids, mask = left_pad(token_ids, loaded.tokenizer.pad_token_id)
        ids, mask = ids.to(loaded.device), mask.to(loaded.device)
        cache = self._cache_cls()
        kwargs = {self._cache_name: cache}
        if loaded.adapter.takes_position_ids:
            kwargs["position_ids"] = positions_from_mask(mask)
        embeds = loaded.adapter.embed_tokens(loaded.model, ids)
        self._base(inputs_embeds=embeds, attention_mask=mask, use_cache=True, **kwargs)
        return BatchStates(
            keys=[layer.keys for layer in cache.layers],
            values=[layer.values for layer in cache.layers],
            lengths=mask.sum(-1),
        )

    @torch.no_grad()
    def encode(self, token_ids: Sequence[Sequence[int]]) -> list[TextStates]:
        """Run each text through the model once (in length-sorted batches) and keep its keys and values."""
        states: list[TextStates | None] = [None] * len(token_ids)
        for batch in batches_by_length([len(t) for t in token_ids], self.encode_batch_size):
            for index, row in zip(batch, self.encode_batch([token_ids[i] for i in batch]).rows()):
                states[index] = row
        return states  # type: ignore[return-value]

    def stack(self, states: Sequence[TextStates]) -> BatchStates:
        """Left-pad single texts' states into one batch (training draws new batches every epoch)."""
        device = self.loaded.device
        lengths = torch.tensor([s.length for s in states], device=device)
        width = padded_width(int(lengths.max()))
        keys, values = [], []
        for layer in range(len(states[0].keys)):
            heads, _, head_dim = states[0].keys[layer].shape
            k = torch.zeros(len(states), heads, width, head_dim, dtype=states[0].keys[layer].dtype, device=device)
            v = torch.zeros_like(k)
            for row, s in enumerate(states):
                k[row, :, width - s.length :] = s.keys[layer]
                v[row, :, width - s.length :] = s.values[layer]
            keys.append(k)
            values.append(v)
        return BatchStates(keys=keys, values=values, lengths=lengths)

    def readout_hidden(self, states: Sequence[TextStates] | BatchStates, prompt: torch.Tensor) -> torch.Tensor:
        """``[B, d]`` hidden states at the last prompt slot for ``B`` cached texts and one ``[n, d]`` prompt."""
        return self.readout_hidden_many(states, prompt.unsqueeze(0))[0]

    def readout_hidden_many(self, states: Sequence[TextStates] | BatchStates, prompts: torch.Tensor) -> torch.Tensor:
        """``[P, B, d]`` hidden states for ``P`` prompts of one length (``[P, n, d]``) on the same ``B`` texts.

        The prompts run in one pass, so the weights are read once for all of them. Where the model
        takes explicit positions, the ``P`` prompts are packed one after another into each text's
        row, every block seeing the text and itself only (a block-diagonal mask) at the positions
        it would have alone, so the text's keys and values are not copied per prompt.
        """
        batch_states = states if isinstance(states, BatchStates) else self.stack(states)
        if prompts.shape[0] > 1 and self.loaded.adapter.takes_position_ids:
            return torch.stack(self.readout_hidden_mixed(batch_states, list(prompts)))
        return self._readout_side_by_side(batch_states, prompts)

    def readout_hidden_mixed(
        self, batch_states: BatchStates, prompts: Sequence[torch.Tensor], text_lengths: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """One ``[B, d]`` read-out per prompt, for ``P`` prompts of any lengths ``[n_p, d]`` on the same texts.

        Args:
            batch_states: the texts' states, encoded for the longest text any prompt reads.
            prompts: ``P`` prompt matrices; differentiable (training several prompts at once).
            text_lengths: ``[B, P]`` how many of each text's tokens prompt ``p`` reads (a longer prompt
                leaves less room for text, and a causal model's states of a truncated text are a prefix
                of the full text's); ``None``: every prompt reads the whole text.

        Where the model takes explicit positions all prompts run packed in one pass, each block seeing
        its own text prefix and itself at the positions it would have alone; otherwise (ALiBi) one
        pass per prompt, each on its own text prefix.
        """
        lengths = batch_states.lengths.to(self.loaded.device)
        if text_lengths is None:
            text_lengths = lengths[:, None].expand(-1, len(prompts))
        text_lengths = text_lengths.to(lengths.device)
        if self.loaded.adapter.takes_position_ids:
            return self._readout_packed(batch_states, prompts, text_lengths)
        hidden = []
        for p, prompt in enumerate(prompts):
            states = batch_states
            if not torch.equal(text_lengths[:, p], lengths):
                states = self.stack([row.prefix(int(n)) for row, n in zip(batch_states.rows(), text_lengths[:, p].tolist())])
            hidden.append(self._readout_side_by_side(states, prompt.unsqueeze(0))[0])
        return hidden

    def readout_hidden_paired(self, batch_states: BatchStates, prompts: torch.Tensor) -> torch.Tensor:
        """``[P, B, d]``: prompt ``p`` (of ``[P, n, d]``) read on rows ``p * B`` to ``p * B + B - 1`` of the ``P * B``
        texts, in one pass (prompts that each train on their own sample, the weights read once for all)."""
        return self._readout_side_by_side(batch_states, prompts, paired=True)

    def _readout_side_by_side(self, batch_states: BatchStates, prompts: torch.Tensor, paired: bool = False) -> torch.Tensor:
        """``P * B`` rows, each with its own copy of its text's states (any architecture, ALiBi included): the
        ``B`` texts repeated for every prompt, or with ``paired`` the ``P * B`` texts given, prompt by prompt."""
        loaded = self.loaded
        device = loaded.device
        n_prompts, n = int(prompts.shape[0]), int(prompts.shape[1])
        if paired and len(batch_states) % n_prompts:
            raise ValueError(f"{len(batch_states)} texts do not split evenly among {n_prompts} prompts")
        batch = len(batch_states) // n_prompts if paired else len(batch_states)
        rows = n_prompts * batch
        lengths = batch_states.lengths if paired else batch_states.lengths.repeat(n_prompts)
        width = int(batch_states.keys[0].shape[2])
        if n_prompts == 1 or paired:
            layers = list(zip(batch_states.keys, batch_states.values))
        else:
            layers = [(k.repeat(n_prompts, 1, 1, 1), v.repeat(n_prompts, 1, 1, 1))
                      for k, v in zip(batch_states.keys, batch_states.values)]
        dtype = layers[0][0].dtype
        columns = torch.arange(width, device=device)
        text_mask = (columns[None, :] >= (width - lengths)[:, None]).long()
        mask = torch.cat([text_mask, text_mask.new_ones(rows, n)], dim=1)
        slots = self._embed_prompts(prompts, dtype).repeat_interleave(batch, dim=0)  # [P*B, n, d], prompt-major
        positions = lengths[:, None] + torch.arange(n, device=device)[None, :]
        hidden = self._run_prompt_positions(layers, slots, mask, positions)
        return hidden[:, -1].reshape(n_prompts, batch, -1)

    def _embed_prompts(self, prompts: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        loaded = self.loaded
        return loaded.adapter.embed_prompt(loaded.model, prompts.to(device=loaded.device, dtype=dtype))

    def _run_prompt_positions(self, layers, slots: torch.Tensor, mask, positions: torch.Tensor) -> torch.Tensor:
        """The base model over the prompt slots, attending to ``layers`` (the cached text); ``[rows, slots, d]``."""
        # A fresh cache object each call: the prompt step appends to it, the stored states stay untouched.
        kwargs = {self._cache_name: self._cache_cls(ddp_cache_data=layers)}
        if self.loaded.adapter.takes_position_ids:
            kwargs["position_ids"] = positions
        return self._base(inputs_embeds=slots, attention_mask=mask, use_cache=True, **kwargs).last_hidden_state

    def _readout_packed(
        self, batch_states: BatchStates, prompts: Sequence[torch.Tensor], text_lengths: torch.Tensor
    ) -> list[torch.Tensor]:
        """The ``P`` prompts packed into each of the ``B`` rows after the cached text; one ``[B, d]`` each."""
        loaded = self.loaded
        device = loaded.device
        sizes = torch.tensor([int(p.shape[0]) for p in prompts], device=device)
        layers = list(zip(batch_states.keys, batch_states.values))
        dtype = layers[0][0].dtype
        width = int(layers[0][0].shape[2])
        lengths = batch_states.lengths.to(device)
        block = torch.repeat_interleave(torch.arange(len(prompts), device=device), sizes)  # [Q]: each slot's prompt
        offsets = torch.cat([torch.arange(int(n), device=device) for n in sizes])  # [Q]: slot within its prompt
        slots = torch.cat([self._embed_prompts(p, dtype) for p in prompts]).unsqueeze(0).expand(len(batch_states), -1, -1)
        positions = text_lengths[:, block] + offsets[None, :]  # [B, Q], logical positions as in a pass alone
        mask = _packed_masks(loaded.model.config, lengths, text_lengths[:, block], positions, width, block, dtype)
        hidden = self._run_prompt_positions(layers, slots, mask, positions)
        ends = (torch.cumsum(sizes, 0) - 1).tolist()
        return [hidden[:, end] for end in ends]


def _packed_masks(
    config, lengths: torch.Tensor, reads: torch.Tensor, q_pos: torch.Tensor, width: int, block: torch.Tensor,
    dtype: torch.dtype,
):
    """Additive ``[B, 1, Q, width + Q]`` masks for prompt blocks packed after left-padded text.

    ``lengths`` is ``[B]``, the real text positions stored per row; ``reads`` is ``[B, Q]``, how many
    of them the query's prompt reads (its own truncation); ``q_pos`` is ``[B, Q]``, each packed
    slot's logical position; ``block`` is ``[Q]``, each slot's prompt.

    A query of block ``p`` sees the first ``reads`` text columns and the earlier slots of its own
    block; distances for sliding windows are taken between logical positions, as in the unpacked
    pass. Models with sliding-window layers get a ``{layer type: mask}`` mapping, others one tensor.
    """
    device = lengths.device
    n_slots = int(block.shape[0])
    text_pos = torch.arange(width, device=device)[None, :] - (width - lengths)[:, None]  # [B, W]; < 0 is padding
    k_pos = torch.cat([text_pos, q_pos], dim=1)  # [B, W + Q]
    is_text = torch.arange(width + n_slots, device=device) < width
    k_block = torch.cat([torch.full((width,), -1, device=device), block])
    text_ok = (k_pos[:, None, :] >= 0) & (k_pos[:, None, :] < reads[:, :, None])  # [B, Q, K]
    own_ok = (k_block[None, :] == block[:, None])[None] & (k_pos[:, None, :] <= q_pos[:, :, None])
    allowed = torch.where(is_text[None, None, :], text_ok, own_ok)  # [B, Q, K]

    def additive(ok: torch.Tensor) -> torch.Tensor:
        return torch.zeros(ok.shape, dtype=dtype, device=device).masked_fill(~ok, torch.finfo(dtype).min)[:, None]

    layer_types = getattr(config, "layer_types", None) or []
    window = getattr(config, "sliding_window", None)
    if "sliding_attention" not in layer_types or not window:
        return additive(allowed)
    near = (q_pos[:, :, None] - k_pos[:, None, :]) < window
    return {"full_attention": additive(allowed), "sliding_attention": additive(allowed & near)}
