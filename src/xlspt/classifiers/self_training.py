"""Self-training on unlabeled target-language text (protocol b).

The classifier labels each language's unlabeled texts with its calibrated vote; the most confident
texts of each predicted class are kept, as many per class (balanced), and its prompts train on them:

* ``shared``: every member continues from its English prompt on all languages' pseudo-labels
  together (one classifier for all of them);
* ``per-language``: each language gets its own members, continued from the English prompts on its
  own pseudo-labels.

>>> tuned = xlspt.self_train(clf, {"fra_Latn": french_texts, "swh_Latn": swahili_texts})
>>> tuned.predict(other_french_texts, language="fra_Latn")

It reads target-language text, so it is a protocol-b method: the classifier records it (its sidecar's
``self_training`` entry, and ``+self-trained`` in its protocol's name), and refuses to score the texts it
trained on (their fingerprints are kept).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Mapping, Sequence

import pandas as pd

from ..data.sampling import FewShotSplit
from ..data.task import TaskData
from ..engine.options import enum_value
from ..errors import ConfigError, XlsptError
from ..sidecar import SelfTrainingRecord, text_fingerprint
from ..train import train_prompts
from .base import Classifier, Method


class SelfTrainingScope(str, Enum):
    """Which prompts the pseudo-labels train: ``shared`` (one set on all languages' pseudo-labels) or
    ``per-language`` (each language its own, started from the English prompts)."""

    SHARED = "shared"
    PER_LANGUAGE = "per-language"


@dataclass(frozen=True)
class SelfTrainingConfig:
    """How pseudo-labels are kept and trained on; each field's ``help`` says what it means."""

    scope: SelfTrainingScope = field(default=SelfTrainingScope.SHARED, metadata={"help": (
        "shared: every member continues on all languages' pseudo-labels together; per-language: each language "
        "gets its own members, continued on its own pseudo-labels")})
    per_class: int = field(default=8, metadata={"help": (
        "pseudo-labelled texts kept per class and language, the most confident first; every class keeps as many "
        "as the class with fewest confident texts (balanced); a quarter of them, at least one, select the epoch")})
    min_confidence: float = field(default=0.0, metadata={"help": (
        "keep only texts whose calibrated probability of the predicted class is at least this")})
    epochs: int = field(default=10, metadata={"help": "passes over the pseudo-labelled texts"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "scope", enum_value(SelfTrainingScope, "scope", self.scope))
        if self.per_class < 2:
            raise ConfigError("per_class", f"must be at least 2: one text to train on and one to select with (got {self.per_class})")
        if not 0 <= self.min_confidence < 1:
            raise ConfigError("min_confidence", f"must be in [0, 1) (got {self.min_confidence})")
        if self.epochs < 1:
            raise ConfigError("epochs", f"must be at least 1 (got {self.epochs})")

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "scope": self.scope.value}


def pseudo_labels(clf: Classifier, unlabeled: Mapping[str, Sequence[str]],
                  config: SelfTrainingConfig = SelfTrainingConfig()) -> pd.DataFrame:
    """Each language's kept pseudo-labelled texts: columns ``language, text, label, probability, split``.

    Every language's texts are scored with ``clf``'s calibration, with those same texts as the language's
    unlabeled text where the protocol reads some. Per language and predicted class the most confident
    texts (at least ``min_confidence``) are kept, as many per class as the scarcest class has, at most
    ``per_class``; the last quarter of each class's kept texts (at least one) is ``validation``. A language
    with fewer than 2 confident texts in some class keeps none.
    """
    frames = []
    for language, texts in unlabeled.items():
        texts = list(dict.fromkeys(texts))  # a text twice would be trained on and validated with
        table = clf.classify(texts, unlabeled_texts=texts, language=language).assign(language=language)
        confident = table[table["probability"] >= config.min_confidence]
        confident = confident.sort_values("probability", ascending=False, kind="stable")
        per_label = {label: confident[confident["label"] == label] for label in clf.labels}
        keep = min(config.per_class, *(len(rows) for rows in per_label.values()))
        if keep < 2:
            continue
        for rows in per_label.values():
            kept = rows.head(keep)
            validation = max(1, keep // 4)
            frames.append(kept.assign(split=["train"] * (keep - validation) + ["validation"] * validation))
    columns = ["language", "text", "label", "probability", "split"]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def _examples(rows: pd.DataFrame) -> FewShotSplit:
    def part(split: str) -> pd.DataFrame:
        chosen = rows[rows["split"] == split]
        # index_id: the row's position in the pseudo-labels (the sidecar's sample lists it)
        return chosen[["text", "label"]].assign(index_id=chosen.index).reset_index(drop=True)

    return FewShotSplit(train=part("train"), validation=part("validation"))


def self_train(clf: Classifier, unlabeled: Mapping[str, Sequence[str]],
               config: SelfTrainingConfig = SelfTrainingConfig(), *, data: TaskData | None = None,
               progress: bool = True) -> Classifier | dict[str, Classifier]:
    """``clf``'s prompts trained further on pseudo-labels of ``unlabeled`` (language -> texts).

    Returns one classifier (``shared``) or one per language that kept pseudo-labels (``per-language``).
    A classifier that standardizes needs ``data``: its training language's statistics are estimated
    again for the new prompts. Raises :class:`~xlspt.errors.XlsptError` when no language kept any
    pseudo-labels, or when ``clf`` has no trainable prompts (a classifier loaded without them).
    """
    if clf.method is not Method.PROMPT:
        raise XlsptError(f"self-training continues soft prompts on the frozen model: a {clf.method.value} classifier "
                         "cannot (train one with --method prompt)")
    if not clf.soft_prompts:
        raise XlsptError("self-training continues the trained prompts, which this classifier lacks: load it from its "
                         "folder (prompt.safetensors with its sidecar)")
    if clf.calibration.standardize and data is None:
        raise XlsptError("this classifier standardizes to its training language's statistics, which change with the "
                         "prompts: pass data= (the task data it was trained on; --data on the command line)")
    labels = pseudo_labels(clf, unlabeled, config)
    if labels.empty:
        raise XlsptError("no language had 2 confident texts in every class to self-train on: give more unlabeled "
                         "texts, or lower min_confidence")
    if config.scope is SelfTrainingScope.SHARED:
        return _trained(clf, labels, config, data, progress, "self-training")
    return {language: _trained(clf, rows, config, data, progress, f"self-training {language}")
            for language, rows in labels.groupby("language", sort=False)}


def _trained(clf: Classifier, rows: pd.DataFrame, config: SelfTrainingConfig, data: TaskData | None,
             progress: bool, desc: str) -> Classifier:
    """``clf`` with every member continued on ``rows``, side by side, each in its own seed's order."""
    examples = _examples(rows)
    members = clf.metadata.members
    trainings = [dataclasses.replace(m.train_config, epochs=config.epochs, min_steps=0, patience=0) for m in members]
    results = train_prompts(clf.model, clf.verbalizer, examples, [sp.config for sp in clf.soft_prompts], trainings,
                            initials=clf.soft_prompts, progress=progress, desc=desc)
    failed = next((r for r in results if isinstance(r, Exception)), None)
    if failed is not None:
        raise failed
    record = SelfTrainingRecord(**config.to_dict(),
                                languages={str(k): int(v) for k, v in rows.groupby("language", sort=False).size().items()},
                                fingerprints=sorted({text_fingerprint(t) for t in rows["text"]}))
    updated = [dataclasses.replace(m, best_epoch=r.best_epoch, best_val_loss=r.best_val_loss,
                                   history=[*m.history, *({**h, "self_training": True} for h in r.history)])
               for m, r in zip(members, results)]
    metadata = dataclasses.replace(clf.metadata, members=updated, self_training=record)
    tuned = type(clf)(clf.model, clf.verbalizer, [r.prompt.export() for r in results], metadata,
                             [r.prompt for r in results], clf.calibration)
    if data is not None:
        tuned.fit_reference(data)
    return tuned


def refuse_self_trained_texts(clf: Classifier, texts: Sequence[str], where: str = "") -> None:
    """Raise :class:`~xlspt.errors.XlsptError` when ``texts`` include texts ``clf``'s prompts were self-trained on."""
    record = clf.metadata.self_training
    if record is None:
        return
    seen = set(record.fingerprints)
    overlap = sum(text_fingerprint(t) in seen for t in texts)
    if overlap:
        raise XlsptError(f"{overlap} of the texts scored{where} are texts this classifier was self-trained on "
                         "(protocol b): score texts it has not read, or the classifier from before self-training")


def refuse_self_trained_test_splits(clf: Classifier, data: TaskData, languages: Sequence[str]) -> None:
    """:func:`refuse_self_trained_texts` for the test splits of ``languages`` (nothing is read for prompts that were
    not self-trained)."""
    for language in languages if clf.metadata.self_training is not None else ():
        refuse_self_trained_texts(clf, data.split(language, "test")["text"].tolist(), f" in {language}")
