"""What the probe baseline reads and how it is evaluated: the frozen model's state at the end of ``text + EOS``.

The probe itself (fitting, saving, loading) is :class:`~xlspt.classifiers.ProbeClassifier`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .data.task import TaskData
from .engine import DEFAULT_MAX_LENGTH, NaiveEngine, batches_by_length, encode_texts
from .errors import XlsptError
from .evaluate import evaluate_each_language
from .models.loading import LoadedModel


@torch.no_grad()
def eos_states(loaded: LoadedModel, texts: Sequence[str], *, max_length: int = DEFAULT_MAX_LENGTH,
               special_tokens: str = "tokenizer", batch_size: int = 32) -> np.ndarray:
    """``[N, d]`` float32 final hidden states at the EOS appended to each text (truncated to ``max_length``)."""
    eos = loaded.tokenizer.eos_token_id
    if eos is None:
        raise XlsptError(f"{loaded.name}'s tokenizer has no EOS token, which the probe reads: use --method prompt")
    ids = [row + [eos] for row in encode_texts(loaded, texts, 0, max_length, special_tokens)]
    engine, empty = NaiveEngine(loaded), torch.zeros(0, loaded.hidden_size)
    out = np.empty((len(texts), loaded.hidden_size), dtype=np.float32)
    for batch in batches_by_length([len(x) for x in ids], batch_size):
        out[batch] = engine.readout_hidden([ids[i] for i in batch], empty).float().cpu().numpy()
    return out


def evaluate_probes(
    probes: Sequence, data: TaskData, languages: Sequence[str], *, split: str = "test",
    batch_size: int = 32, progress: bool = True,
) -> list[pd.DataFrame]:
    """Per-language results of several probes (:class:`~xlspt.classifiers.ProbeClassifier`) on one model, reading
    each language's text once."""
    first = probes[0]
    if any((p.max_length, p.special_tokens) != (first.max_length, first.special_tokens) for p in probes):
        raise XlsptError("these probes read text differently (max_length, special_tokens): evaluate them one at a time")

    def score_language(lang: str, frame: pd.DataFrame) -> list[torch.Tensor]:
        states = eos_states(first.model, frame["text"].tolist(), max_length=first.max_length,
                            special_tokens=first.special_tokens, batch_size=batch_size)
        return [probe.scores_of(states) for probe in probes]

    labels = [probe.labels for probe in probes]
    return evaluate_each_language(first.model, data, languages, split, labels, ["zero-shot"] * len(probes), score_language,
                                  desc="evaluating probes", progress=progress)
