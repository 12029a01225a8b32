"""Low-rank adapters (LoRA) on the frozen base model, through PEFT, attached only while they are used.

A loaded model is shared: by every classifier a server or a label job hosts, and by the runs of a sweep. An
adapter is therefore never left in it: :func:`attached_lora` injects the adapter's layers (PEFT's
:class:`~peft.LoraModel`, in place), loads its weights, and on leaving removes the layers again
(:meth:`~peft.LoraModel.unload`), so the base model's modules and weights are exactly what they were.
"""

from __future__ import annotations

import contextlib
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

    def __post_init__(self) -> None:
        if isinstance(self.target_modules, list):
            object.__setattr__(self, "target_modules", tuple(self.target_modules))
        if self.rank < 1:
            raise ConfigError("rank", f"must be at least 1 (got {self.rank})")
        if not self.alpha > 0:
            raise ConfigError("alpha", f"must be positive (got {self.alpha})")
        if not 0 <= self.dropout < 1:
            raise ConfigError("dropout", f"must be in [0, 1) (got {self.dropout})")
        if self.target_modules is not None and not self.target_modules:
            raise ConfigError("target_modules", "name at least one layer, or leave it unset for the architecture's default")

    def targets(self, loaded: LoadedModel) -> tuple[str, ...]:
        """The layer names adapters go on in ``loaded``: the configured ones, else its architecture's default."""
        return self.target_modules or loaded.adapter.lora_targets

    def to_dict(self) -> dict:
        return {"rank": self.rank, "alpha": self.alpha, "dropout": self.dropout,
                "target_modules": list(self.target_modules) if self.target_modules else None}

    @classmethod
    def from_dict(cls, values: dict | None) -> "LoraConfig":
        values = dict(values or {})
        if values.get("target_modules") is not None:
            values["target_modules"] = tuple(values["target_modules"])
        return cls(**{k: v for k, v in values.items() if k in {"rank", "alpha", "dropout", "target_modules"}})


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
    parameters by name (trainable); at exit the layers are removed and the base model is as it was."""
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
