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
import time
from dataclasses import dataclass
from typing import Sequence

import torch

from ..data.sampling import FewShotSplit
from ..engine import CachedTextEngine, PromptPass, make_engine, shuffled_batches
from ..models.loading import LoadedModel
from ..progress import checkpoint, interactive, line as progress_line, progress_bar
from ..soft_prompt import PromptConfig, SoftPrompt
from ..verbalizer import Verbalizer
from .config import TrainConfig, TrainingDiverged, TrainResult
from .optimisation import MasterWeights, linear_warmup_schedule, readout_loss_rows


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
    per_prompt = _samples_per_prompt(examples, configs, adapters)
    initials = list(initials) if initials is not None else [None] * len(configs)
    prompts = [_starting_prompt(loaded, prompt_config, initial, config.seed)
               for prompt_config, initial, config in zip(prompt_configs, initials, configs)]
    model_trains = not first.freeze_model or adapters is not None  # the text's states change as they train
    engine = make_engine(loaded, first.engine, model_trains=model_trains, encode_batch_size=first.eval_batch_size)
    groups, texts = _read_samples(engine, loaded, verbalizer, per_prompt, prompts, configs)
    train_size = len(texts[0][0])
    epochs = first.epochs_for(train_size)
    total_steps = math.ceil(train_size / first.batch_size) * epochs
    if not first.freeze_model:
        loaded.model.requires_grad_(True)
    trained = (list(adapters) if adapters is not None else list(loaded.model.parameters())) if model_trains else []
    low_precision = [p for p in trained if p.dtype != torch.float32]
    masters = MasterWeights(trained) if low_precision else None
    runs = [_PromptRun(prompt, config, (masters.masters if masters is not None else trained) if model_trains else None,
                       total_steps) for prompt, config in zip(prompts, configs)]
    # The order of examples depends on the seed only, so prompts trained together see the batches they would alone.
    samples = [_Sample(train, val, [runs[p] for p in ps], torch.Generator().manual_seed(seed))
               for ((_, seed), ps), (train, val) in zip(groups.items(), texts)]
    try:
        _run_epochs(engine, samples, runs, trained, masters, first, epochs, total_steps, progress, desc)
    finally:
        if not first.freeze_model:
            _freeze(loaded.model)
        for param in trained:
            param.grad = None
    return [run.result(trained) for run in runs]


def _samples_per_prompt(examples: FewShotSplit | Sequence[FewShotSplit], configs: list[TrainConfig],
                        adapters: Sequence[torch.nn.Parameter] | None) -> list[FewShotSplit]:
    """Each prompt's sample, once what trains together is checked to be able to."""
    first = configs[0]
    per_prompt = [examples] * len(configs) if isinstance(examples, FewShotSplit) else list(examples)
    if len(per_prompt) != len(configs):
        raise ValueError(f"{len(per_prompt)} samples for {len(configs)} prompts: give one, or one per prompt")
    if len(configs) > 1 and not all(c.freeze_model and c.steps_key(seed=False) == first.steps_key(seed=False)
                                    for c in configs):
        raise ValueError("prompts trained together need the same batches, epochs and text encoding, and a frozen model")
    if adapters is not None and (len(configs) > 1 or not first.freeze_model):
        raise ValueError("adapters train with one prompt on a frozen model")
    return per_prompt


def _read_samples(engine, loaded: LoadedModel, verbalizer: Verbalizer, per_prompt: list[FewShotSplit],
                  prompts: list[SoftPrompt], configs: list[TrainConfig]):
    """The prompts grouped by ``(sample, seed)`` (those of a group share its batches), and each group's training and
    validation texts, read once for all its prompts' lengths."""
    first = configs[0]
    groups: dict[tuple, list[int]] = {}  # (sample, seed) -> its prompts
    for p, (sample, config) in enumerate(zip(per_prompt, configs)):
        groups.setdefault((id(sample), config.seed), []).append(p)
    texts = [(_LabelledTexts.read(engine, loaded, per_prompt[ps[0]].train, [prompts[p].config.length for p in ps], first,
                                  verbalizer),
              _LabelledTexts.read(engine, loaded, per_prompt[ps[0]].validation, [prompts[p].config.length for p in ps],
                                  first, verbalizer)) for ps in groups.values()]
    if len({(len(train), len(val)) for train, val in texts}) > 1:
        raise ValueError("samples trained side by side need the same numbers of training and validation examples")
    return groups, texts


def _run_epochs(engine, samples: list[_Sample], runs: list[_PromptRun], trained: list[torch.nn.Parameter],
                masters: MasterWeights | None, first: TrainConfig, epochs: int, total_steps: int, progress: bool,
                desc: str) -> None:
    """Every epoch: a step per batch, then the validation losses that keep each prompt's best epoch (and stop
    those whose patience ran out); a progress bar, or a line per epoch in a log file."""
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


def _train_epoch(engine, samples: Sequence[_Sample], batch_size: int, epoch: int, masters: MasterWeights | None,
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
                   masters: MasterWeights | None) -> list[_PromptRun]:
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
    progress_line(f"{desc}: epoch {epoch}/{epochs}, validation loss "
                  f"{min(run.history[-1]['val_loss'] for run in active):.3f} ({time.time() - started:.0f} s)")
