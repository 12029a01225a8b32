"""Training a soft prompt on a few labelled examples, the model frozen by default.

AdamW, linear schedule with warm-up, validation loss after every epoch, and the prompt
of the epoch with the best validation loss is the one kept (as in the study).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm

from .data.sampling import FewShotSplit
from .engine import DEFAULT_MAX_LENGTH, ENGINES, encode_texts, make_engine, shuffled_batches
from .engine.readout import readout_cross_entropy
from .errors import XlsptError
from .models.loading import LoadedModel
from .prompt import PromptConfig, SoftPrompt
from .verbalizer import Verbalizer


@dataclass
class TrainConfig:
    """Optimisation settings; the defaults are the study's.

    Args:
        epochs: passes over the training examples (the study used 20 to 50).
        lr: AdamW learning rate of the prompt (and its reparameterization network).
        batch_size: training examples per step.
        warmup_ratio: share of all steps spent warming the learning rate up linearly.
        weight_decay: AdamW weight decay (PyTorch's default).
        seed: seeds the prompt initialisation and the order of examples.
        max_length: text + prompt + EOS are truncated (text only) to this many tokens.
        freeze_model: train only the prompt (the study's "MF"); otherwise the model trains too.
        model_lr: learning rate of the model's weights when ``freeze_model`` is False
            (``None``: the prompt's, as the reference code did).
        eval_batch_size: batch size for validation and evaluation passes.
        engine: ``"auto"`` (the cached-text engine with a frozen model, else the naive full pass),
            ``"cached"`` or ``"naive"``; all give the same results up to float rounding.
    """

    epochs: int = 20
    lr: float = 5e-3
    batch_size: int = 8
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    seed: int = 0
    max_length: int = DEFAULT_MAX_LENGTH
    freeze_model: bool = True
    model_lr: float | None = None
    eval_batch_size: int = 32
    engine: str = "auto"

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise XlsptError(f"--epochs must be at least 1 (got {self.epochs})")
        if not (self.lr > 0):
            raise XlsptError(f"--lr must be positive (got {self.lr})")
        if self.batch_size < 1:
            raise XlsptError(f"--batch-size must be at least 1 (got {self.batch_size})")
        if not 0 <= self.warmup_ratio < 1:
            raise XlsptError(f"warmup_ratio must be in [0, 1) (got {self.warmup_ratio})")
        if self.engine not in ENGINES:
            raise XlsptError(f"--engine must be one of {', '.join(ENGINES)} (got {self.engine!r})")
        if self.engine == "cached" and not self.freeze_model:
            raise XlsptError("--engine cached needs a frozen model: drop --train-model or use --engine naive")
        if self.max_length < 8:
            raise XlsptError(f"--max-length must be at least 8 (got {self.max_length})")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    """The trained prompt (best epoch restored) and the loss curve."""

    prompt: SoftPrompt
    best_epoch: int
    best_val_loss: float
    history: list[dict] = field(default_factory=list)


def linear_warmup_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int):
    """Linear warm-up to the base learning rate, then linear decay to zero at ``total_steps``.

    The schedule of the reference code (``transformers.get_linear_schedule_with_warmup``, same
    arithmetic), without importing transformers' trainer stack for one formula.
    """

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def readout_loss(engine, verbalizer: Verbalizer, inputs, labels, prompt: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the full vocabulary at the read-out position, target = the label word's token.

    ``inputs`` are what ``engine.prepare`` made of the texts (token ids, or cached text states).
    """
    hidden = engine.readout_hidden(inputs, prompt)
    return readout_cross_entropy(engine.loaded, hidden, verbalizer.target_token_ids(labels))


@torch.no_grad()
def validation_loss(engine, verbalizer, inputs, labels, prompt: torch.Tensor, batch_size: int) -> float:
    total = 0.0
    for start in range(0, len(inputs), batch_size):
        chunk = slice(start, start + batch_size)
        loss = readout_loss(engine, verbalizer, inputs[chunk], labels[chunk], prompt)
        total += loss.item() * len(inputs[chunk])
    return total / len(inputs)


def train_prompt(
    loaded: LoadedModel,
    verbalizer: Verbalizer,
    examples: FewShotSplit,
    prompt_config: PromptConfig | None = None,
    config: TrainConfig | None = None,
    *,
    initial: SoftPrompt | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train a soft prompt on ``examples.train``, selecting the epoch by loss on ``examples.validation``.

    Returns the prompt of the best epoch. With ``initial`` (a saved prompt, with its
    reparameterization network) training continues from it, with a fresh optimizer and schedule.
    With ``config.freeze_model`` False the model's weights are trained in place as well (and the
    best epoch's weights restored).
    """
    config = config or TrainConfig()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    if initial is not None:
        prompt = copy.deepcopy(initial).to(loaded.device)
        prompt_config = prompt.config
    else:
        prompt_config = prompt_config or PromptConfig()
        prompt = SoftPrompt(prompt_config, loaded.hidden_size, generator=generator).to(loaded.device)
    prompt.requires_grad_(True)

    engine = make_engine(loaded, config.engine, model_trains=not config.freeze_model, encode_batch_size=config.eval_batch_size)
    train_inputs = engine.prepare(
        encode_texts(loaded, examples.train["text"].tolist(), prompt_config.length, config.max_length)
    )
    train_labels = examples.train["category"].tolist()
    val_inputs = engine.prepare(
        encode_texts(loaded, examples.validation["text"].tolist(), prompt_config.length, config.max_length)
    )
    val_labels = examples.validation["category"].tolist()

    groups = [{"params": list(prompt.parameters()), "lr": config.lr}]
    if not config.freeze_model:
        loaded.model.requires_grad_(True)
        groups.append({"params": list(loaded.model.parameters()), "lr": config.model_lr or config.lr})
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_inputs) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    scheduler = linear_warmup_schedule(optimizer, int(config.warmup_ratio * total_steps), total_steps)

    best = (math.inf, 0, copy.deepcopy(prompt.state_dict()), None)
    history: list[dict] = []
    bar = tqdm(total=total_steps, desc="training", unit="step", disable=not progress, dynamic_ncols=True)
    try:
        for epoch in range(1, config.epochs + 1):
            running, seen = 0.0, 0
            for batch in shuffled_batches(len(train_inputs), config.batch_size, generator):
                loss = readout_loss(
                    engine, verbalizer, [train_inputs[i] for i in batch], [train_labels[i] for i in batch], prompt()
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                running += loss.item() * len(batch)
                seen += len(batch)
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{running / seen:.3f}", best_val=f"{best[0]:.3f}")
            val = validation_loss(engine, verbalizer, val_inputs, val_labels, prompt(), config.eval_batch_size)
            history.append({"epoch": epoch, "train_loss": running / seen, "val_loss": val})
            if val < best[0]:
                model_state = None if config.freeze_model else copy.deepcopy(loaded.model.state_dict())
                best = (val, epoch, copy.deepcopy(prompt.state_dict()), model_state)
            bar.set_postfix(epoch=epoch, loss=f"{running / seen:.3f}", val=f"{val:.3f}", best_val=f"{best[0]:.3f}")
    finally:
        bar.close()
        if not config.freeze_model:
            loaded.model.requires_grad_(False)
    best_val, best_epoch, prompt_state, model_state = best
    prompt.load_state_dict(prompt_state)
    if model_state is not None:
        loaded.model.load_state_dict(model_state)
    return TrainResult(prompt=prompt, best_epoch=best_epoch, best_val_loss=best_val, history=history)
