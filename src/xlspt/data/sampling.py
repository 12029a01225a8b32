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
from .task import TaskData


@dataclass(frozen=True)
class FewShotSplit:
    """The examples a prompt is trained on (``train``) and selected with (``validation``)."""

    train: pd.DataFrame
    validation: pd.DataFrame


def balance(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Undersample every class to the size of the rarest one."""
    per_class = int(frame["label"].value_counts().min())
    return _per_class(frame, per_class, seed)


def _per_class(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    return frame.groupby("label", group_keys=False, sort=True).sample(n=n, random_state=seed).reset_index(drop=True)


def validation_shots(shots: int, available: int) -> int:
    return min(math.ceil(shots / 4), available)


def sample_few_shot(data: TaskData, lang: str, shots: int, seed: int) -> FewShotSplit:
    """Draw ``shots`` training and ``ceil(shots/4)`` validation examples per class of ``lang``.

    Any number of classes (two or more) works; a class with fewer than ``shots`` training
    examples, or none in the dev split, is refused with the largest ``shots`` that works.
    """
    if shots < 1:
        raise XlsptError(f"--shots must be at least 1 (got {shots})")
    labels = data.labels(lang)
    train_all, dev_all = data.split(lang, "train"), data.split(lang, "dev")
    counts = train_all["label"].value_counts()
    rarest = min(labels, key=lambda label: (int(counts.get(label, 0)), labels.index(label)))
    available = int(counts.get(rarest, 0))
    if shots > available:
        raise XlsptError(
            f"--shots {shots} is more than the {available} examples of the class {rarest!r} in the {lang} train split "
            f"(the balanced pool has {available} per class): use --shots {available} or fewer"
        )
    stray = sorted(set(dev_all["label"]) - set(labels))
    if stray:
        raise XlsptError(f"the {lang} dev split has the label {stray[0]!r}, which its train split lacks: "
                         f"the classes are {', '.join(labels)}")
    missing = [label for label in labels if label not in set(dev_all["label"])]
    if missing:
        raise XlsptError(f"the {lang} dev split has no example of the class {missing[0]!r}: "
                         "validation needs every class; add one, or let xlspt split a single file")
    train = balance(train_all, seed)
    dev = balance(dev_all, seed)
    val_per_class = validation_shots(shots, len(dev) // len(labels))
    return FewShotSplit(train=_per_class(train, shots, seed), validation=_per_class(dev, val_per_class, seed))


def split_in_halves(frame: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A development language's dev split cut in two seeded halves, stratified by label: the first
    labelled, for choosing settings; the second's texts, without their labels, that language's
    unlabeled text (docs/cli.md#language-sets)."""
    from sklearn.model_selection import train_test_split

    counts = frame["label"].value_counts()
    stratify = frame["label"] if counts.min() >= 2 else None  # a class with one row cannot be split
    labelled, unlabeled = train_test_split(frame, test_size=0.5, random_state=seed, stratify=stratify)
    return labelled, unlabeled
