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
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

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
        self.damaged = 0

    def _path(self, token_ids: Sequence[Sequence[int]]) -> Path:
        digest = hashlib.sha256(json.dumps([list(map(int, ids)) for ids in token_ids]).encode()).hexdigest()[:24]
        return self.root / f"{digest}.safetensors"

    def encode_batch(self, engine: CachedTextEngine, token_ids: Sequence[Sequence[int]]) -> BatchStates:
        """The batch's states from disk, or computed by ``engine`` and saved."""
        path = self._path(token_ids)
        device = engine.loaded.device
        if path.is_file():
            stored = self._read(path)
            if stored is not None:
                self.hits += 1
                layers = len([k for k in stored if k.startswith("keys.")])
                stored = {k: t.to(device) for k, t in stored.items()}
                return BatchStates(
                    keys=[stored[f"keys.{i}"] for i in range(layers)],
                    values=[stored[f"values.{i}"] for i in range(layers)],
                    lengths=stored["lengths"],
                )
            self.damaged += 1  # truncated or corrupted (a killed writer, a bad disk): recomputed below
            path.unlink(missing_ok=True)
        states = engine.encode_batch(token_ids)
        tensors = {f"keys.{i}": k.contiguous().cpu() for i, k in enumerate(states.keys)}
        tensors.update({f"values.{i}": v.contiguous().cpu() for i, v in enumerate(states.values)})
        tensors["lengths"] = states.lengths.to(torch.long).contiguous().cpu()
        metadata = {"checksum": _checksum(tensors)}
        write_with_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
        self.misses += 1
        return states

    @staticmethod
    def _read(path: Path) -> dict[str, torch.Tensor] | None:
        """The file's tensors if it is whole and matches the checksum written with it, else ``None``."""
        try:
            with safe_open(str(path), framework="pt") as handle:
                expected = (handle.metadata() or {}).get("checksum")
                tensors = {k: handle.get_tensor(k) for k in handle.keys()}
        except (SafetensorError, OSError, ValueError, RuntimeError):
            return None
        return tensors if expected is not None and expected == _checksum(tensors) else None


def _checksum(tensors: dict[str, torch.Tensor]) -> str:
    """BLAKE2b of every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.blake2b(digest_size=16)
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()
