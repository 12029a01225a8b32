"""Training soft prompts on a few labelled examples, the model frozen by default.

AdamW, linear schedule with warm-up, validation loss after every epoch, and the prompt
of the epoch with the best validation loss is the one kept (as in the study).

Several prompts on the same examples (a sweep's runs that share a training sample: other
prompt lengths, reparameterization on and off, other learning rates) train together: every
step reads one batch of cached text and runs all their prompt positions packed in one pass
(:meth:`~xlspt.engine.CachedTextEngine.readout_hidden_mixed`), and the LM head is read once
for all of them. Each prompt keeps its own optimizer, schedule and best epoch, and the order
of examples depends on the seed only, so a prompt trained with others is the prompt it would
be alone (up to float rounding of the larger matrix products).

Prompts on different samples (an ensemble's members, a sweep's seeds) train together too: each
sample keeps its own batches in its own seed's order, and at every step the samples' batches
are read side by side in one pass (:meth:`~xlspt.engine.CachedTextEngine.readout_hidden_paired`)
with one read of the LM head.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Sequence

import torch

from .data.sampling import FewShotSplit
from .engine import DEFAULT_MAX_LENGTH, CachedTextEngine, PromptPass, ReadoutConfig, make_engine, shuffled_batches
from .engine.options import enum_value
from .engine.readout import readout_cross_entropy_rows
from .errors import ConfigError, XlsptError
from .models.loading import LoadedModel
from .progress import checkpoint, interactive, progress_bar
from .prompt import PromptConfig, SoftPrompt
from .verbalizer import Verbalizer

#: Learning rate of the model's weights when it trains too (no model freezing): a fine-tuning
#: rate chosen on English dev (README); the reference code's single rate, 5e-3, destroys the model.
DEFAULT_MODEL_LR = 1e-4


class TrainingLoss(str, Enum):
    """What the training loss reads at the read-out position: ``vocabulary``, the cross-entropy of the label
    word over the model's whole vocabulary (the study's reference code); ``label-words``, the cross-entropy
    over the classes only (a softmax over their label words' logits, as prediction reads them)."""

    VOCABULARY = "vocabulary"
    LABEL_WORDS = "label-words"


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
        freeze_model: train only the prompt (the study's "MF"); otherwise the model trains too,
            with float32 master weights whatever the model's dtype.
        model_lr: learning rate of the model's weights when ``freeze_model`` is False.
        eval_batch_size: batch size for validation and evaluation passes.
        engine: ``"auto"`` (the cached-text engine with a frozen model, else the naive full pass),
            ``"cached"`` or ``"naive"``; all give the same results up to float rounding.
        special_tokens: ``"tokenizer"`` (the tokenizer's special tokens) or ``"reference"`` (none, as
            the study's reference code; a model that needs its BOS keeps it).
        loss: ``"vocabulary"`` or ``"label-words"`` (:class:`TrainingLoss`).
        min_steps: at least this many optimizer steps: more epochs than ``epochs`` when a small sample
            gives few steps per epoch (0: ``epochs`` decides alone, as in the study).
        patience: stop a prompt once its validation loss has not improved for this many epochs; it keeps
            its best epoch (0: every prompt trains all its epochs, as in the study).
    """

    epochs: int = 20
    lr: float = 5e-3
    batch_size: int = 8
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    seed: int = 0
    max_length: int = DEFAULT_MAX_LENGTH
    freeze_model: bool = True
    model_lr: float = DEFAULT_MODEL_LR
    eval_batch_size: int = 32
    engine: str = "auto"
    special_tokens: str = "tokenizer"
    loss: str = TrainingLoss.VOCABULARY.value
    min_steps: int = 0
    patience: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError("epochs", f"must be at least 1 (got {self.epochs})")
        if self.min_steps < 0:
            raise ConfigError("min_steps", f"must be 0 (off) or more (got {self.min_steps})")
        if self.patience < 0:
            raise ConfigError("patience", f"must be 0 (off) or more (got {self.patience})")
        self.loss = enum_value(TrainingLoss, "loss", self.loss).value
        if not (self.lr > 0):
            raise ConfigError("lr", f"must be positive (got {self.lr})")
        if not (self.model_lr > 0):
            raise ConfigError("model_lr", f"must be positive (got {self.model_lr})")
        if self.batch_size < 1:
            raise ConfigError("batch_size", f"must be at least 1 (got {self.batch_size})")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError("warmup_ratio", f"must be in [0, 1) (got {self.warmup_ratio})")
        self.readout.engine.for_training(not self.freeze_model)

    @property
    def readout(self) -> ReadoutConfig:
        """The read-out settings, checked there (kept as plain fields here: ``to_dict`` is what saved prompts hold)."""
        try:
            return ReadoutConfig(max_length=self.max_length, special_tokens=self.special_tokens,
                                 batch_size=self.eval_batch_size, engine=self.engine)
        except ConfigError as exc:
            if exc.field != "batch_size":
                raise
            # here batch_size is the training batch: the error names the field that was given
            raise ConfigError("eval_batch_size", exc.problem) from None

    def to_dict(self) -> dict:
        return asdict(self)

    def epochs_for(self, examples: int) -> int:
        """The epochs that training on ``examples`` runs: ``epochs``, or more to reach ``min_steps``."""
        steps_per_epoch = math.ceil(examples / self.batch_size)
        return max(self.epochs, math.ceil(self.min_steps / max(1, steps_per_epoch)))

    def steps_key(self, *, seed: bool = True) -> tuple:
        """What shapes the steps: the batches (with ``seed``, their order too), the epochs, the loss and the text
        encoding. Prompts on different samples train together when all but the seed agree."""
        keys = ("epochs", "min_steps", "loss", "batch_size", "max_length", "special_tokens", "eval_batch_size")
        return tuple(getattr(self, k) for k in keys) + ((self.seed,) if seed else ())

    def shares_steps_with(self, other: "TrainConfig") -> bool:
        """Whether two prompts can train in the same steps: equal :meth:`steps_key` and a frozen model."""
        return self.steps_key() == other.steps_key() and self.freeze_model and other.freeze_model


class TrainingDiverged(XlsptError):
    """The training loss or the prompt became NaN or infinite.

    ``best`` is the prompt of the best epoch before that (its weights restored), when one finished.
    """

    def __init__(self, message: str, best: "TrainResult | None" = None):
        super().__init__(message)
        self.best = best


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


def readout_loss_rows(loaded: LoadedModel, verbalizer: Verbalizer, hidden: torch.Tensor, labels: Sequence[str],
                      loss: str = TrainingLoss.VOCABULARY.value) -> torch.Tensor:
    """``[B]`` training loss of each read-out state ``hidden`` (``[B, d]``) against its class in ``labels``."""
    if TrainingLoss(loss) is TrainingLoss.LABEL_WORDS:
        label_ids = torch.tensor(verbalizer.token_ids, device=hidden.device)
        class_logits = verbalizer.class_logits(loaded.adapter.logits(loaded.model, hidden, label_ids).float())
        return torch.nn.functional.cross_entropy(class_logits, verbalizer.label_index(labels).to(hidden.device),
                                                 reduction="none")
    return readout_cross_entropy_rows(loaded, hidden, verbalizer.target_token_ids(labels))


def readout_loss(engine, verbalizer: Verbalizer, inputs, labels, prompt: torch.Tensor,
                 loss: str = TrainingLoss.VOCABULARY.value) -> torch.Tensor:
    """Mean training loss at the read-out position (:func:`readout_loss_rows`).

    ``inputs`` are what ``engine.prepare`` made of the texts (token ids, or cached text states).
    """
    return readout_loss_rows(engine.loaded, verbalizer, engine.readout_hidden(inputs, prompt), labels, loss).mean()


@torch.no_grad()
def validation_loss(engine, verbalizer, inputs, labels, prompt: torch.Tensor, batch_size: int,
                    loss: str = TrainingLoss.VOCABULARY.value) -> float:
    total = 0.0
    for start in range(0, len(inputs), batch_size):
        chunk = slice(start, start + batch_size)
        total += readout_loss(engine, verbalizer, inputs[chunk], labels[chunk], prompt, loss).item() * len(inputs[chunk])
    return total / len(inputs)


class _MasterWeights:
    """Float32 copies of a low-precision model's weights: AdamW steps the copies, the model gets them rounded.

    The copies are cut into chunks of :attr:`CHUNK` elements. AdamW on a CPU steps one tensor at a time,
    in several elementwise passes over it; on chunks those passes run on data that stays in the cache,
    which made the optimizer step of the embedded model about 3x faster on a 2-core CPU (0.40 s against
    1.15 s, benchmarks/README.md). Each element goes through the same operations with the same scalars as on whole tensors, so
    the results are bit-identical (a test checks it).
    """

    CHUNK = 1 << 18

    def __init__(self, params: Sequence[torch.nn.Parameter]):
        self.chunk = chunk = self.CHUNK
        self.params = list(params)
        self.chunks = [[torch.nn.Parameter(piece.to(torch.float32, copy=True)) for piece in self._flat(p).split(chunk)]
                       for p in self.params]
        self.masters = [master for chunks in self.chunks for master in chunks]

    @staticmethod
    def _flat(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.detach().view(-1)  # a view: writing into it writes into the model's weights

    def take_grads(self) -> None:
        for param, chunks in zip(self.params, self.chunks):
            pieces = [None] * len(chunks) if param.grad is None else self._flat(param.grad).split(self.chunk)
            for master, piece in zip(chunks, pieces):
                master.grad = None if piece is None else piece.to(torch.float32, copy=True)
            param.grad = None

    @torch.no_grad()
    def write_back(self) -> None:
        for param, chunks in zip(self.params, self.chunks):
            for piece, master in zip(self._flat(param).split(self.chunk), chunks):
                piece.copy_(master)


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
    best epoch's weights restored). Raises :class:`TrainingDiverged` if the loss becomes NaN.
    """
    result = train_prompts(loaded, verbalizer, examples, [prompt_config], [config or TrainConfig()],
                           initials=[initial], progress=progress)[0]
    if isinstance(result, Exception):
        raise result
    return result


def train_prompts(
    loaded: LoadedModel,
    verbalizer: Verbalizer,
    examples: FewShotSplit | Sequence[FewShotSplit],
    prompt_configs: Sequence[PromptConfig | None],
    configs: Sequence[TrainConfig],
    *,
    initials: Sequence[SoftPrompt | None] | None = None,
    progress: bool = True,
    desc: str = "training",
    adapters: Sequence[torch.nn.Parameter] | None = None,
) -> list[TrainResult | TrainingDiverged]:
    """Train ``P`` prompts in the same steps (see the module docstring).

    ``examples`` is one sample for all the prompts, or one per prompt (an ensemble's members, each on its
    own sample; samples of equal sizes). Prompts given the same sample and seed share its batches; each
    other sample is read side by side with them at every step, in its own seed's order, so that each
    prompt sees the batches it would see alone. ``configs`` must agree on what shapes the steps
    (:meth:`TrainConfig.steps_key`, the seed aside); they may differ in learning rates, weight decay and
    warm-up. With one prompt, the model may train too (``freeze_model`` False), or ``adapters``: the parameters of
    low-rank adapters attached to the frozen model (:func:`~xlspt.lora.attached_lora`), trained with the prompt at
    ``model_lr`` while every other weight stays as it is (the best epoch's adapter weights restored). Returns, per
    prompt, its result or the :class:`TrainingDiverged` error that stopped it (the others go on).
    """
    configs = list(configs)
    first = configs[0]
    per_prompt = [examples] * len(configs) if isinstance(examples, FewShotSplit) else list(examples)
    if len(per_prompt) != len(configs):
        raise ValueError(f"{len(per_prompt)} samples for {len(configs)} prompts: give one, or one per prompt")
    if len(configs) > 1 and not all(c.freeze_model and c.steps_key(seed=False) == first.steps_key(seed=False)
                                    for c in configs):
        raise ValueError("prompts trained together need the same batches, epochs and text encoding, and a frozen model")
    if adapters is not None and (len(configs) > 1 or not first.freeze_model):
        raise ValueError("adapters train with one prompt on a frozen model")
    initials = list(initials) if initials is not None else [None] * len(configs)
    prompts = [_starting_prompt(loaded, prompt_config, initial, config.seed)
               for prompt_config, initial, config in zip(prompt_configs, initials, configs)]
    model_trains = not first.freeze_model or adapters is not None  # the text's states change as they train
    engine = make_engine(loaded, first.engine, model_trains=model_trains, encode_batch_size=first.eval_batch_size)
    groups: dict[tuple, list[int]] = {}  # (sample, seed) -> its prompts
    for p, (sample, config) in enumerate(zip(per_prompt, configs)):
        groups.setdefault((id(sample), config.seed), []).append(p)
    texts = [(_LabelledTexts.read(engine, loaded, per_prompt[ps[0]].train, [prompts[p].config.length for p in ps], first,
                                  verbalizer),
              _LabelledTexts.read(engine, loaded, per_prompt[ps[0]].validation, [prompts[p].config.length for p in ps],
                                  first, verbalizer)) for ps in groups.values()]
    if len({(len(train), len(val)) for train, val in texts}) > 1:
        raise ValueError("samples trained side by side need the same numbers of training and validation examples")
    train_size = len(texts[0][0])
    epochs = first.epochs_for(train_size)
    total_steps = math.ceil(train_size / first.batch_size) * epochs
    if not first.freeze_model:
        loaded.model.requires_grad_(True)
    trained = (list(adapters) if adapters is not None else list(loaded.model.parameters())) if model_trains else []
    low_precision = [p for p in trained if p.dtype != torch.float32]
    masters = _MasterWeights(trained) if low_precision else None
    runs = [_PromptRun(prompt, config, (masters.masters if masters is not None else trained) if model_trains else None,
                       total_steps) for prompt, config in zip(prompts, configs)]
    # The order of examples depends on the seed only, so prompts trained together see the batches they would alone.
    samples = [_Sample(train, val, [runs[p] for p in ps], torch.Generator().manual_seed(seed))
               for ((_, seed), ps), (train, val) in zip(groups.items(), texts)]
    bar = progress_bar(total=total_steps, desc=desc, unit="step", disable=not progress)
    started = time.time()
    try:
        for epoch in range(1, epochs + 1):
            seen = _train_epoch(engine, samples, first.batch_size, epoch, masters, bar)
            active = _still_training(runs)
            if not active:
                break
            val_losses = _validation_losses(engine, samples, first.eval_batch_size)
            for run in active:
                run.record_epoch(epoch, seen, val_losses[run], trained)
                run.stop_if_stalled(epoch)
            bar.set_postfix(epoch=epoch, best_val=f"{min(run.best_val_loss for run in active):.3f}")
            if progress and not interactive():  # no bar in a log file: a line per epoch instead
                _log_epoch(desc, epoch, epochs, active, started)
            checkpoint()
    finally:
        bar.close()
        if not first.freeze_model:
            _freeze(loaded.model)
        for param in trained:
            param.grad = None
    return [run.result(trained) for run in runs]


def _starting_prompt(loaded: LoadedModel, prompt_config: PromptConfig | None, initial: SoftPrompt | None,
                     seed: int) -> SoftPrompt:
    """A prompt as it starts: a copy of ``initial``, or new from the seed."""
    # Each prompt (and its reparameterization network, which PyTorch initialises from the global
    # generator) starts from its seed, as it would alone.
    torch.manual_seed(seed)
    if initial is not None:
        prompt = copy.deepcopy(initial).to(loaded.device)
    else:
        init = torch.Generator().manual_seed(seed)
        prompt = SoftPrompt(prompt_config or PromptConfig(), loaded.hidden_size, generator=init).to(loaded.device)
    return prompt.requires_grad_(True)


def _freeze(model: torch.nn.Module) -> None:
    """The model frozen again after it trained, without the last step's gradients."""
    model.requires_grad_(False)
    for param in model.parameters():
        param.grad = None


@dataclass
class _LabelledTexts:
    """A split's read-outs for every prompt length, with the labels that score them."""

    readouts: PromptPass
    labels: list[str]
    verbalizer: Verbalizer
    loss: str

    @classmethod
    def read(cls, engine, loaded: LoadedModel, frame, lengths: Sequence[int], config: TrainConfig,
             verbalizer: Verbalizer) -> "_LabelledTexts":
        """``frame``'s ``text`` column read for prompts of ``lengths``, with its ``label`` column."""
        readouts = PromptPass(loaded, frame["text"].tolist(), lengths, max_length=config.max_length,
                              special_tokens=config.special_tokens).prepare(engine)
        return cls(readouts, frame["label"].tolist(), verbalizer, config.loss)

    def __len__(self) -> int:
        return len(self.readouts)


@dataclass
class _Sample:
    """A training sample's texts, the runs that train on it, and the generator of its batches' order."""

    train: _LabelledTexts
    val: _LabelledTexts
    runs: list["_PromptRun"]
    shuffle: torch.Generator


#: A sample's texts, the rows of a batch, and the runs that read them.
_Part = tuple[_LabelledTexts, Sequence[int], Sequence["_PromptRun"]]


def _losses(engine, parts: Sequence[_Part]) -> torch.Tensor:
    """The mean loss of every part's runs on that part's rows, in order: the LM head is read once for all, and
    where every run is its own sample's only prompt, of one length, the model runs once for all of them too."""
    hidden: list[torch.Tensor] = []
    labels: list[str] = []
    if _side_by_side(engine, parts):
        length = parts[0][2][0].prompt.config.length
        states = [texts.readouts.inputs[length][i] for texts, rows, _ in parts for i in rows]
        prompts = torch.stack([run.prompt() for _, _, runs in parts for run in runs])
        hidden = list(engine.readout_hidden_paired(engine.stack(states), prompts))
        labels = [texts.labels[i] for texts, rows, _ in parts for i in rows]
    else:
        for texts, rows, runs in parts:
            hidden += texts.readouts.hidden(rows, [run.prompt() for run in runs])
            labels += [texts.labels[i] for i in rows] * len(runs)
    texts = parts[0][0]
    losses = readout_loss_rows(engine.loaded, texts.verbalizer, torch.cat(hidden), labels, texts.loss)
    return torch.stack([chunk.mean() for chunk in losses.split([len(h) for h in hidden])])


def _side_by_side(engine, parts: Sequence[_Part]) -> bool:
    """Whether :meth:`~xlspt.engine.CachedTextEngine.readout_hidden_paired` reads ``parts`` in one pass."""
    if len(parts) < 2 or not isinstance(engine, CachedTextEngine) or any(len(runs) != 1 for _, _, runs in parts):
        return False
    length = parts[0][2][0].prompt.config.length
    return (all(runs[0].prompt.config.length == length and texts.readouts.source[length] == length
                for texts, _, runs in parts) and len({len(rows) for _, rows, _ in parts}) == 1)


class _PromptRun:
    """One prompt in training: its optimizer and schedule, the current epoch's running loss and
    gradient norms, its best epoch so far (with the prompt's and, when it trains, the model's
    weights of that epoch), its loss curve, and the error that stopped it, if one did."""

    def __init__(self, prompt: SoftPrompt, config: TrainConfig, model_params: list | None, total_steps: int):
        self.prompt = prompt
        self.config = config
        groups = [{"params": list(prompt.parameters()), "lr": config.lr}]
        if model_params is not None:
            groups.append({"params": model_params, "lr": config.model_lr})
        self.optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = linear_warmup_schedule(self.optimizer, int(config.warmup_ratio * total_steps), total_steps)
        self.best_val_loss = math.inf
        self.best_epoch = 0  # none yet: the starting weights are what a run with no finite validation loss keeps
        self.best_prompt_state = copy.deepcopy(prompt.state_dict())
        self.best_model_state: list[torch.Tensor] | None = None
        self.history: list[dict] = []
        self.failure: TrainingDiverged | None = None
        self.stalled = False  # stopped early: no better validation loss for ``config.patience`` epochs
        self.start_epoch()

    def start_epoch(self) -> None:
        self.running_loss = 0.0
        self.grad_norms: list[float] = []

    def diverged(self, what: str) -> None:
        self.failure = TrainingDiverged(f"{what}: lower the learning rate (lr {self.config.lr})")

    def step(self, loss: float, rows: int, where: str) -> None:
        """Bookkeeping and optimizer step once the batch's gradients (``rows`` examples, mean ``loss``) are in."""
        grads = [t.grad for t in self.prompt.parameters() if t.grad is not None]
        self.grad_norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))) if grads else 0.0)
        self.optimizer.step()
        self.scheduler.step()
        self.running_loss += loss * rows
        if not all(torch.isfinite(t).all() for t in self.prompt.parameters()):
            self.diverged(f"the prompt became NaN or infinite at {where}")

    def record_epoch(self, epoch: int, seen: int, val_loss: float, trained: Sequence[torch.nn.Parameter]) -> None:
        """The epoch's line of the loss curve (``seen`` training examples), and its weights (the prompt's and the
        ``trained`` model or adapter weights) if it is the best yet."""
        norms = self.grad_norms
        self.history.append({"epoch": epoch, "train_loss": self.running_loss / seen, "val_loss": val_loss,
                             "grad_norm": sum(norms) / len(norms), "grad_norm_max": max(norms)})
        if val_loss < self.best_val_loss:
            self.best_model_state = [p.detach().clone() for p in trained] if trained else None
            self.best_val_loss, self.best_epoch = val_loss, epoch
            self.best_prompt_state = copy.deepcopy(self.prompt.state_dict())

    def stop_if_stalled(self, epoch: int) -> None:
        patience = self.config.patience
        self.stalled = bool(patience) and self.best_epoch > 0 and epoch - self.best_epoch >= patience

    def result(self, trained: Sequence[torch.nn.Parameter]) -> TrainResult | TrainingDiverged:
        """The prompt of the best epoch (the model's weights of that epoch restored when it trained), or the
        error that stopped it, with the best epoch before that when one finished."""
        if self.failure is not None:
            if self.best_epoch:
                self.prompt.load_state_dict(self.best_prompt_state)
                self.failure.best = self._best()
            return self.failure
        self.prompt.load_state_dict(self.best_prompt_state)
        if self.best_model_state is not None:
            with torch.no_grad():
                for param, best in zip(trained, self.best_model_state):
                    param.copy_(best)
        return self._best()

    def _best(self) -> TrainResult:
        return TrainResult(prompt=self.prompt, best_epoch=self.best_epoch, best_val_loss=self.best_val_loss,
                           history=self.history)


def _still_training(runs: Sequence[_PromptRun]) -> list[_PromptRun]:
    return [run for run in runs if run.failure is None and not run.stalled]


def _train_epoch(engine, samples: Sequence[_Sample], batch_size: int, epoch: int, masters: _MasterWeights | None,
                 bar) -> int:
    """One pass over the training examples, each sample in its seed's order; returns how many examples of a
    sample the steps read."""
    for sample in samples:
        for run in sample.runs:
            run.start_epoch()
    seen = 0
    orders = [shuffled_batches(len(sample.train), batch_size, sample.shuffle) for sample in samples]
    for step, batches in enumerate(zip(*orders), 1):
        active = _training_step(engine, samples, batches, f"epoch {epoch}, step {step}", masters)
        if not active:
            break
        seen += len(batches[0])
        bar.update(1)
        bar.set_postfix(epoch=epoch, loss=f"{sum(run.running_loss for run in active) / (seen * len(active)):.3f}")
    return seen


def _training_step(engine, samples: Sequence[_Sample], batches: Sequence[list[int]], where: str,
                   masters: _MasterWeights | None) -> list[_PromptRun]:
    """One optimizer step of every prompt still training, each on its sample's batch; returns the runs that took it."""
    active, losses = _finite_losses(engine, samples, batches, where)
    if not active:
        return active
    for run in active:
        run.optimizer.zero_grad(set_to_none=True)
    losses.sum().backward()  # the prompts' graphs are separate: each gets its own loss's gradient
    if masters is not None:
        masters.take_grads()
    for run, loss in zip(active, losses.tolist()):
        run.step(loss, len(batches[0]), where)
    if masters is not None:
        masters.write_back()
    return active


def _active_parts(samples: Sequence[_Sample], rows: Sequence[Sequence[int]], split: str = "train") -> list[_Part]:
    """Each sample's texts of ``split``, its rows, and its runs still training (samples with none left out)."""
    parts = [(getattr(sample, split), sample_rows, _still_training(sample.runs)) for sample, sample_rows in zip(samples, rows)]
    return [part for part in parts if part[2]]


def _finite_losses(engine, samples: Sequence[_Sample], batches: Sequence[list[int]], where: str):
    """The runs still training and their ``[len(active)]`` losses on their batches, once every run whose loss
    is not finite has been stopped (and the others' losses computed again without it)."""
    while True:
        parts = _active_parts(samples, batches)
        active = [run for _, _, runs in parts for run in runs]
        if not active:
            return active, None
        losses = _losses(engine, parts)
        bad = {run: loss for run, loss in zip(active, losses.tolist()) if not math.isfinite(loss)}
        if not bad:
            return active, losses
        if len(active) > 1:  # a diverged prompt's huge values reach the others through the shared pass
            with torch.no_grad():
                alone = {run: _losses(engine, [(texts, rows, [run])]).item() for texts, rows, runs in parts for run in runs}
            bad = {run: loss for run, loss in alone.items() if not math.isfinite(loss)} or bad
        for run, loss in bad.items():
            run.diverged(f"the training loss became {loss} at {where}")


@torch.no_grad()
def _validation_losses(engine, samples: Sequence[_Sample], batch_size: int) -> dict[_PromptRun, float]:
    """Each run's mean loss on its sample's validation examples, in batches of ``batch_size`` for all runs at once."""
    size = len(samples[0].val)
    totals: dict[_PromptRun, torch.Tensor] = {}
    for start in range(0, size, batch_size):
        rows = list(range(start, min(start + batch_size, size)))
        parts = _active_parts(samples, [rows] * len(samples), "val")
        runs = [run for _, _, part_runs in parts for run in part_runs]
        for run, loss in zip(runs, _losses(engine, parts).float().cpu()):
            totals[run] = totals.get(run, 0) + loss * len(rows)  # float32, as the losses
    return {run: float(total / size) for run, total in totals.items()}


def _log_epoch(desc: str, epoch: int, epochs: int, active: Sequence[_PromptRun], started: float) -> None:
    print(f"{desc}: epoch {epoch}/{epochs}, validation loss "
          f"{min(run.history[-1]['val_loss'] for run in active):.3f} ({time.time() - started:.0f} s)",
          file=sys.stderr, flush=True)
