"""Balanced k-shot sampling, as the study's reference code does it.

English train and dev are first undersampled to balanced classes (as many per class
as the rarest class has: 58 in train, 8 in dev), then ``k`` examples per class are
drawn for training and ``ceil(k / 4)`` per class for validation (capped at what the
balanced dev set holds: all 8 when ``k = 32``). Everything is seeded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from ..errors import XlsptError
from .sib200 import Sib200


@dataclass(frozen=True)
class FewShotSplit:
    """The examples a prompt is trained on (``train``) and selected with (``validation``)."""

    train: pd.DataFrame
    validation: pd.DataFrame


def balance(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Undersample every category to the size of the rarest one."""
    per_class = int(frame["category"].value_counts().min())
    return _per_class(frame, per_class, seed)


def _per_class(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    return frame.groupby("category", group_keys=False, sort=True).sample(n=n, random_state=seed).reset_index(drop=True)


def validation_shots(shots: int, available: int) -> int:
    return min(math.ceil(shots / 4), available)


def sample_few_shot(data: Sib200, lang: str, shots: int, seed: int) -> FewShotSplit:
    """Draw ``shots`` training and ``ceil(shots/4)`` validation examples per class of ``lang``."""
    if shots < 1:
        raise XlsptError(f"--shots must be at least 1 (got {shots})")
    train = balance(data.split(lang, "train"), seed)
    dev = balance(data.split(lang, "dev"), seed)
    n_classes = train["category"].nunique()
    available = len(train) // n_classes
    if shots > available:
        raise XlsptError(
            f"--shots {shots} is more than the {available} examples per class of the balanced {lang} train split: "
            f"use --shots {available} or fewer"
        )
    val_per_class = validation_shots(shots, len(dev) // dev["category"].nunique())
    return FewShotSplit(train=_per_class(train, shots, seed), validation=_per_class(dev, val_per_class, seed))
