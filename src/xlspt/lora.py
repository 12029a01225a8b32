"""Low-rank adapters (LoRA) on the frozen base model, through PEFT, attached only while they are used.

A loaded model is shared: by every classifier a server or a label job hosts, and by the runs of a sweep. An
adapter is therefore never left in it: :func:`attached_lora` injects the adapter's layers (PEFT's
:class:`~peft.LoraModel`, in place), loads its weights, and on leaving removes the layers again
(:meth:`~peft.LoraModel.unload`), so the base model's modules and weights are exactly what they were.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Iterator

import torch

from .errors import ConfigError, XlsptError
from .models.loading import LoadedModel

#: The adapter name PEFT keys the weights under (one adapter is attached at a time).
ADAPTER_NAME = "default"


@dataclass(frozen=True)
class LoraConfig:
    """Low-rank adapters: ``W x + (alpha / rank) B A x`` on each target layer, ``A: [rank, in]``, ``B: [out, rank]``
    (``B`` starts at zero, so training starts from the frozen model)."""

    rank: int = field(default=8, metadata={"help": "the adapters' rank r"})
    alpha: float = field(default=16.0, metadata={"help": "the scale numerator: the update is (alpha / rank) B A"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on the adapters' input while training"})
    target_modules: tuple[str, ...] | None = field(default=None, metadata={
        "help": "names of the linear layers that get adapters (default: the architecture's attention query and value)"})
    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate of the adapters (the prompt keeps its own)"})

    def __post_init__(self) -> None:
        if isinstance(self.target_modules, list):
            object.__setattr__(self, "target_modules", tuple(self.target_modules))
        if self.rank < 1:
            raise ConfigError("rank", f"must be at least 1 (got {self.rank})")
        if not self.alpha > 0:
            raise ConfigError("alpha", f"must be positive (got {self.alpha})")
        if not self.lr > 0:
            raise ConfigError("lr", f"must be positive (got {self.lr})")
        if not 0 <= self.dropout < 1:
            raise ConfigError("dropout", f"must be in [0, 1) (got {self.dropout})")
        if self.target_modules is not None and not self.target_modules:
            raise ConfigError("target_modules", "name at least one layer, or leave it unset for the architecture's default")

    def targets(self, loaded: LoadedModel) -> tuple[str, ...]:
        """The layer names adapters go on in ``loaded``: the configured ones, else its architecture's default."""
        return self.target_modules or loaded.adapter.lora_targets

    def to_dict(self) -> dict:
        return {"rank": self.rank, "alpha": self.alpha, "dropout": self.dropout,
                "target_modules": list(self.target_modules) if self.target_modules else None, "lr": self.lr}

    @classmethod
    def from_dict(cls, values: dict | None) -> "LoraConfig":
        values = dict(values or {})
        if values.get("target_modules") is not None:
            values["target_modules"] = tuple(values["target_modules"])
        return cls(**{k: v for k, v in values.items() if k in {f.name for f in dataclasses.fields(cls)}})


def _peft():
    try:
        import peft
    except ImportError:
        raise XlsptError("the lora method needs PEFT: pip install -e '.[lora]' in the xlspt clone") from None
    return peft


@contextlib.contextmanager
def attached_lora(loaded: LoadedModel, config: LoraConfig, weights: dict[str, torch.Tensor] | None = None, *,
                  seed: int | None = None) -> Iterator[dict[str, torch.nn.Parameter]]:
    """The adapters of ``config`` in ``loaded.model`` for the block: with ``weights`` (as :func:`lora_weights`
    returned them) loaded, else freshly initialised (``A`` random from ``seed``, ``B`` zero). Yields the adapters'
    parameters by name (trainable); at exit the layers are removed and the base model is as it was.

    Reading goes through the adapters unmerged (the base layer in the model's dtype, the adapter beside it), as
    in training: merging them into the weights for a scoring pass was measured no faster on a 2-core CPU (160
    French texts on Gemma 3 270M in bfloat16: 6.9 and 7.8 s merged, 6.7 and 6.9 s not)."""
    peft = _peft()
    model = loaded.model
    targets = config.targets(loaded)
    present = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    missing = [t for t in targets if t not in present]
    if missing:
        raise ConfigError("target_modules", f"{', '.join(missing)} is no linear layer of {loaded.name} "
                                            f"(it has {', '.join(sorted(present))})")
    frozen = {name: p.requires_grad for name, p in model.named_parameters()}
    peft_config = peft.LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                                  target_modules=list(targets), bias="none")
    fork = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
    with fork:
        if seed is not None:
            torch.manual_seed(seed)
        wrapper = peft.LoraModel(model, peft_config, ADAPTER_NAME)
    try:
        if weights is not None:
            outcome = peft.set_peft_model_state_dict(model, weights, adapter_name=ADAPTER_NAME)
            unexpected = getattr(outcome, "unexpected_keys", None) or []
            if unexpected:
                raise XlsptError(f"the saved adapter has weights for layers this model lacks ({unexpected[0]}...): "
                                 "load it on the model it was trained on")
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.data = p.data.to(device=loaded.device)
        yield {name: p for name, p in model.named_parameters() if "lora_" in name}
    finally:
        wrapper.unload()
        for name, p in model.named_parameters():
            p.requires_grad_(frozen.get(name, False))


def lora_weights(loaded: LoadedModel) -> dict[str, torch.Tensor]:
    """The attached adapters' weights (PEFT's state-dict keys), detached copies on the CPU: what is saved."""
    peft = _peft()
    return {k: v.detach().cpu().clone() for k, v in peft.get_peft_model_state_dict(loaded.model, adapter_name=ADAPTER_NAME).items()}


#: How PEFT's saved adapters name a layer: ``base_model.model.`` before the model's own module path.
PEFT_PREFIX = "base_model.model."


def adapter_tensors(adapters: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """What ``adapter_model.safetensors`` holds: one adapter under PEFT's key names, or each of an ensemble's members
    under ``members.<i>.`` (float32, contiguous)."""
    def named(weights: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}{PEFT_PREFIX}{k}": v.detach().float().cpu().contiguous() for k, v in weights.items()}

    if len(adapters) == 1:
        return named(adapters[0], "")
    return {k: v for i, weights in enumerate(adapters) for k, v in named(weights, f"members.{i}.").items()}


def adapters_from_tensors(tensors: dict[str, torch.Tensor], members: int, where: str) -> list[dict[str, torch.Tensor]]:
    """The ``members`` adapters of :func:`adapter_tensors`' file (``where`` names it in errors), as
    :func:`attached_lora` takes them."""
    prefixes = [""] if members == 1 else [f"members.{i}." for i in range(members)]
    out = []
    for prefix in prefixes:
        own = {k[len(prefix) + len(PEFT_PREFIX):]: v for k, v in tensors.items() if k.startswith(prefix + PEFT_PREFIX)}
        if not own:
            raise XlsptError(f"{where} holds no adapter weights under {prefix + PEFT_PREFIX!r}: it is not the adapter "
                             "file its sidecar describes")
        out.append(own)
    return out


def adapter_parameters(adapters: list[dict[str, torch.Tensor]]) -> int:
    """The numbers the adapters hold."""
    return sum(v.numel() for weights in adapters for v in weights.values())
