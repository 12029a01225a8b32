"""The training loss at the read-out position, reading the LM head once.

The loss is the cross-entropy over the full vocabulary (262k rows for Gemma 3) at one
position. With a frozen head, autograd would read the ``[V, d]`` head weight twice per step
(logits forward, then the hidden state's gradient); on a CPU both passes are bound by
memory bandwidth, not arithmetic. :func:`readout_cross_entropy` walks the vocabulary once in
chunks with an online softmax and accumulates the gradient with respect to the hidden state
on the way (``dL/dh = softmax(z) W - W[target]``), giving the same loss and gradient. It is
used for float32 heads; a bfloat16 head is half the bytes and autograd's two passes are faster.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.loading import LoadedModel

_CHUNK_ROWS = 8192


class _FusedHeadCrossEntropy(torch.autograd.Function):
    """Per-row cross-entropy ``[B]`` of ``hidden @ weight.T`` against ``targets``, with its hidden-state gradient."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        batch = hidden.shape[0]
        h = hidden.detach().float()
        running_max = torch.full((batch,), -float("inf"), device=h.device)
        total = torch.zeros(batch, device=h.device)
        weighted = torch.zeros(batch, weight.shape[1], device=h.device)
        for rows in weight.split(_CHUNK_ROWS):
            rows = rows.float()  # accumulate in float32 whatever the weights' dtype
            z = h @ rows.T
            new_max = torch.maximum(running_max, z.amax(dim=1))
            rescale = torch.exp(running_max - new_max)
            e = torch.exp(z - new_max[:, None])
            total = total * rescale + e.sum(dim=1)
            weighted = weighted * rescale[:, None] + e @ rows
            running_max = new_max
        target_rows = weight[targets].float()
        target_logit = (h * target_rows).sum(dim=1)
        losses = running_max + torch.log(total) - target_logit
        ctx.save_for_backward(weighted / total[:, None] - target_rows)
        ctx.hidden_dtype = hidden.dtype
        return losses

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (grad_hidden,) = ctx.saved_tensors
        return (grad_output[:, None] * grad_hidden).to(ctx.hidden_dtype), None, None


def readout_cross_entropy(loaded: LoadedModel, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the full vocabulary at the read-out position.

    Args:
        hidden: ``[B, d]`` hidden states at the read-out position.
        targets: ``[B]`` vocabulary ids of the label words.
    """
    return readout_cross_entropy_rows(loaded, hidden, targets).mean()


def readout_cross_entropy_rows(loaded: LoadedModel, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``[B]`` cross-entropy of each row over the full vocabulary (several prompts' rows in one pass over the head).

    ``targets``: ``[B]`` token ids, or ``[B, K]`` several correct tokens per row (padded with ``-1``),
    whose probabilities add up: the loss is ``-log`` of their sum.
    """
    model, adapter = loaded.model, loaded.adapter
    if targets.ndim == 2:
        logits = adapter.logits(model, hidden).float()
        targets = targets.to(logits.device)
        chosen = logits.gather(1, targets.clamp_min(0)).masked_fill(targets < 0, -float("inf"))
        return torch.logsumexp(logits, dim=1) - torch.logsumexp(chosen, dim=1)
    head = model.get_output_embeddings()
    plain_head = getattr(head, "bias", None) is None and getattr(model.config, "final_logit_softcapping", None) is None
    # In bfloat16 the head is half the bytes and autograd's two passes run on fast bf16 kernels;
    # the one-pass form pays off for float32 weights.
    if hidden.requires_grad and not head.weight.requires_grad and plain_head and head.weight.dtype == torch.float32:
        return _FusedHeadCrossEntropy.apply(hidden, head.weight, targets.to(hidden.device))
    logits = adapter.logits(model, hidden)
    return nn.functional.cross_entropy(logits.float(), targets.to(logits.device), reduction="none")
