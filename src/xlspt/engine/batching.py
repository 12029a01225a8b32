"""Tokenizing texts for the prompt layout and grouping them into batches."""

from __future__ import annotations

from typing import Iterator, Sequence

import torch

from ..models.loading import LoadedModel
from .options import DEFAULT_MAX_LENGTH, SpecialTokens


#: Batch widths are rounded up to a multiple of this. Left padding changes no result, and a bounded
#: set of tensor shapes keeps per-shape kernel caches (oneDNN's) and the allocator's free lists from
#: growing with every new width: over many languages resident memory stays flat (benchmarks/README.md).
PAD_MULTIPLE = 8


def encode_texts(
    loaded: LoadedModel,
    texts: Sequence[str],
    prompt_length: int,
    max_length: int = DEFAULT_MAX_LENGTH,
    special_tokens: SpecialTokens | str = SpecialTokens.TOKENIZER,
) -> list[list[int]]:
    """Token ids of each text, truncated so that ``len(ids) + prompt_length + 1`` (the EOS slot) fits
    ``max_length``. The prompt is never truncated.

    ``special_tokens="tokenizer"`` keeps the tokenizer's special prefix (XGLM's ``</s>``);
    ``"reference"`` adds none, as the study's reference code (``add_special_tokens=False``).
    Models that need a BOS (Gemma 3) get it either way.
    """
    budget = max_length - prompt_length - 1
    if budget < 2:
        raise ValueError(f"max_length {max_length} leaves no room for text after a {prompt_length}-token prompt")
    tokenizer = loaded.tokenizer
    add = SpecialTokens(special_tokens) is SpecialTokens.TOKENIZER
    encoded = tokenizer(list(texts), add_special_tokens=add, truncation=True, max_length=budget)["input_ids"]
    bos = tokenizer.bos_token_id
    if loaded.adapter.requires_bos and bos is not None:
        encoded = [ids if ids[:1] == [bos] else [bos] + ids[: budget - 1] for ids in encoded]
    return [list(ids) for ids in encoded]


def batches_by_length(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first), to keep padding small."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[list[int]]:
    """A random permutation of ``range(n)`` cut into batches, as a training epoch uses."""
    order = torch.randperm(n, generator=generator).tolist()
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` per-row positions of a left-padded 0/1 mask: 0 at each row's first real token."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def padded_width(longest: int) -> int:
    """The width of a left-padded batch whose longest row has ``longest`` positions (see :data:`PAD_MULTIPLE`)."""
    return -(-longest // PAD_MULTIPLE) * PAD_MULTIPLE


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, L]`` ids padded on the left and the matching 0/1 attention mask; ``L`` is the
    longest row rounded up by :func:`padded_width`."""
    width = padded_width(max(len(s) for s in sequences))
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq) :] = 1
    return ids, mask
