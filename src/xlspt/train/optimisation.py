"""The pieces of one training step: the warm-up schedule, the read-out loss over the label words, and float32 master
weights for a model (or adapters) trained in bfloat16."""

from __future__ import annotations

from typing import Sequence

import torch

from ..engine.readout import readout_cross_entropy_rows
from ..models.loading import LoadedModel
from ..verbalizer import Verbalizer

from .config import TrainingLoss


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


class MasterWeights:
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
