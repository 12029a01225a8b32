"""The soft prompt: ``n`` trainable vectors placed after the text, with optional reparameterization.

Input layout (as in the study's reference code)::

    [BOS] text tokens ... | p_1 ... p_n | EOS
                                      ^ read-out position (the last prompt slot)

The prompt lives in the space of embedding-table rows: the model's own embedding
treatment (Gemma's and XGLM's ``sqrt(d)`` scaling, BLOOM's embedding LayerNorm) is
applied to it by the forward engine, so a prompt row equal to the table row of token
``t`` acts exactly like ``t``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .errors import ConfigError


@dataclass
class PromptConfig:
    """Shape of a soft prompt (each field's ``help`` says what it means).

    A bad value raises :class:`~xlspt.errors.ConfigError` naming this config's field (``length``);
    a run config names its own (``prompt_length``).
    """

    length: int = field(default=4, metadata={"help": "number of prompt vectors n (the study tried 1 to 64)"})
    reparam_hidden: int | None = field(default=None, metadata={"help": (
        "hidden size h of the reparameterization network LayerNorm(Linear(h->d)(ReLU(Linear(d->h)(P)))), "
        "or None to train P directly")})
    init_range: float = field(default=0.5, metadata={"help": "P is initialised uniform in [-init_range, init_range]"})

    def __post_init__(self) -> None:
        if self.length < 1:
            raise ConfigError("length", f"must be at least 1 (got {self.length})")
        if self.reparam_hidden is not None and self.reparam_hidden < 1:
            raise ConfigError("reparam_hidden", f"must be a positive size (got {self.reparam_hidden})")
        if self.init_range <= 0:
            raise ConfigError("init_range", f"must be positive (got {self.init_range})")

    def to_dict(self) -> dict:
        return asdict(self)


class SoftPrompt(nn.Module):
    """``n x d`` prompt parameters ``P`` and, optionally, the reparameterization network.

    Calling the module returns the prompt matrix ``[n, d]`` to feed the engine; after
    training that output is what gets exported, and the network can be dropped.
    """

    def __init__(self, config: PromptConfig, hidden_size: int, generator: torch.Generator | None = None):
        super().__init__()
        self.config = config
        weight = torch.empty(config.length, hidden_size)
        weight.uniform_(-config.init_range, config.init_range, generator=generator)
        self.weight = nn.Parameter(weight)
        self.reparam: nn.Module | None = None
        if config.reparam_hidden is not None:
            self.reparam = nn.Sequential(
                nn.Linear(hidden_size, config.reparam_hidden),
                nn.ReLU(),
                nn.Linear(config.reparam_hidden, hidden_size),
                nn.LayerNorm(hidden_size),
            )

    @property
    def hidden_size(self) -> int:
        return int(self.weight.shape[1])

    def forward(self) -> torch.Tensor:
        """The prompt matrix ``[n, d]``."""
        return self.reparam(self.weight) if self.reparam is not None else self.weight

    @torch.no_grad()
    def export(self) -> torch.Tensor:
        """The final prompt matrix ``[n, d]``, detached (the reparameterization applied)."""
        return self().detach().clone()
