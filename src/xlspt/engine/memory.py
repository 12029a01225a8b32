"""Handing freed memory back to the operating system between long stretches of work."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's ``malloc_trim``, or ``None`` where the C library has none (musl, macOS, Windows)."""
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


def release_freed_memory() -> None:
    """Return the heap's free pages to the system (glibc; nothing elsewhere).

    Each language brings batches of new sizes; glibc keeps the memory they freed for reuse, so
    resident memory climbs in steps over many languages although nothing stays alive. Trimming
    after each language keeps it at what is in use (benchmarks/README.md), in microseconds.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
