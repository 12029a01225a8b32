"""Choosing label words: each candidate trains a prompt on the same sample, ranked on the training language's
dev split (no target language is read)."""

from __future__ import annotations

import logging
from typing import Sequence

import pandas as pd

from ..data.task import TaskData
from ..errors import XlsptError
from ..models.loading import LoadedModel
from ..soft_prompt import PromptConfig
from ..train import TrainConfig
from .prompt import PromptClassifier

logger = logging.getLogger(__name__)


def choose_label_words(
    model: LoadedModel,
    data: TaskData,
    candidates: Sequence[dict[str, str]],
    *,
    train_language: str = "eng_Latn",
    shots: int = 8,
    prompt: PromptConfig | None = None,
    training: TrainConfig | None = None,
    allow_first_subtoken: bool = False,
    progress: bool = True,
) -> tuple[dict[str, str], pd.DataFrame]:
    """Pick the label words whose prompt classifies the training language's dev split best.

    Each candidate (label -> word, or ``word1|word2`` for several) trains a prompt on the same
    sample with the same seed; the candidates are ranked by accuracy on the whole dev split of
    ``train_language`` (no target language is read). Returns the best candidate and a table
    ``candidate, label_words, dev_accuracy, dev_macro_f1`` (ties go to the earlier candidate).
    """
    from ..results import score

    if not candidates:
        raise XlsptError("no label-word candidates to choose from: give at least one")
    dev = data.split(train_language, "dev")
    rows = []
    for i, words in enumerate(candidates):
        if progress:
            logger.info(f"label words {i + 1}/{len(candidates)}: {words}")
        clf = PromptClassifier.train(model, data, train_language=train_language, shots=shots, prompt=prompt,
                                     training=training, label_words=words, allow_first_subtoken=allow_first_subtoken,
                                     progress=progress, recipe="study")
        predicted = clf.predict(dev["text"].tolist())
        rows.append({"candidate": i, "label_words": clf.verbalizer.as_dict(),
                     **{f"dev_{k}": v for k, v in score(dev["label"].tolist(), predicted, clf.verbalizer.labels).items()}})
    table = pd.DataFrame(rows)
    best = int(table["dev_accuracy"].idxmax())
    return dict(table.at[best, "label_words"]), table
