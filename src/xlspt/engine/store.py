"""Text states on disk, so that later evaluations of the same sentences skip the text pass.

A sweep scores many prompts (seeds, lengths, settings) on the same test sentences, often in
separate processes. :class:`TextStateStore` keeps each batch's keys and values as a
safetensors file under the user's cache directory. The key covers the model (name, shape
signature, dtype) and the exact token ids of the batch, which fold in the tokenizer, the data
and the truncation: change any of them and the key changes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import load_file, save_file

from ..files import cache_dir, write_with_atomic
from ..models.loading import LoadedModel
from .cached import BatchStates, CachedTextEngine


class TextStateStore:
    """Batch states of one model, stored under ``root`` (default: ``<cache>/states/<model key>``)."""

    def __init__(self, loaded: LoadedModel, root: str | Path | None = None):
        identity = {
            "model": loaded.name,
            "signature": loaded.signature(),
            "dtype": str(loaded.dtype),
            "tokenizer": getattr(loaded.tokenizer, "name_or_path", ""),
            "vocab": len(loaded.tokenizer),
        }
        model_key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        self.root = Path(root) if root is not None else cache_dir("states", model_key)
        self.root.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0

    def _path(self, token_ids: Sequence[Sequence[int]]) -> Path:
        digest = hashlib.sha256(json.dumps([list(map(int, ids)) for ids in token_ids]).encode()).hexdigest()[:24]
        return self.root / f"{digest}.safetensors"

    def encode_batch(self, engine: CachedTextEngine, token_ids: Sequence[Sequence[int]]) -> BatchStates:
        """The batch's states from disk, or computed by ``engine`` and saved."""
        path = self._path(token_ids)
        device = engine.loaded.device
        if path.is_file():
            tensors = load_file(str(path), device=str(device))
            layers = len([k for k in tensors if k.startswith("keys.")])
            self.hits += 1
            return BatchStates(
                keys=[tensors[f"keys.{i}"] for i in range(layers)],
                values=[tensors[f"values.{i}"] for i in range(layers)],
                lengths=tensors["lengths"],
            )
        states = engine.encode_batch(token_ids)
        tensors = {f"keys.{i}": k.contiguous() for i, k in enumerate(states.keys)}
        tensors.update({f"values.{i}": v.contiguous() for i, v in enumerate(states.values)})
        tensors["lengths"] = states.lengths.to(torch.long).contiguous()
        write_with_atomic(path, lambda tmp: save_file({k: t.cpu() for k, t in tensors.items()}, str(tmp)))
        self.misses += 1
        return states
