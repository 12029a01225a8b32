"""One language's scores, and the per-language results table every evaluation returns.

A results table has one row per language (:data:`RESULT_COLUMNS`); the per-class rows, the
confusion counts and the device ride along in its ``attrs`` (one row per language stays the schema).
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd
from sklearn.metrics import accuracy_score, f1_score

from .classes import PER_CLASS_COLUMNS, confusion, per_class_rows
from .device import device_info

RESULT_COLUMNS = ["language", "accuracy", "macro_f1", "n", "protocol"]


def score(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    return {
        "accuracy": float(accuracy_score(gold, predicted)),
        "macro_f1": float(f1_score(gold, predicted, labels=list(labels), average="macro", zero_division=0)),
    }


def language_result(
    lang: str, gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str], protocol: str
) -> tuple[dict, list[dict], list[list[int]]]:
    """One language's row of a results table, its per-class rows and its confusion counts ``[C, C]``."""
    row = {"language": lang, **score(gold, predicted, labels), "n": len(gold), "protocol": protocol}
    return row, per_class_rows(gold, predicted, labels, lang), confusion(gold, predicted, labels).tolist()


def results_table(
    loaded, labels: Sequence[str], rows: list[dict], per_class: list[dict], confusions: dict,
    predictions: list[dict] | None = None, limit: int = 0,
) -> pd.DataFrame:
    """The per-language table (:data:`RESULT_COLUMNS`); the per-class details, every scored text
    (:func:`prediction_rows`), the ``limit`` and the device ride along in ``attrs`` (not as columns: one row per
    language stays the schema)."""
    table = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    table.attrs.update(labels=list(labels), per_class=per_class, confusion=confusions,
                       device=device_info(loaded.device, loaded.dtype))
    if predictions is not None:
        table.attrs["predictions"] = predictions
    if limit:
        table.attrs["limit"] = limit
    return table


def prediction_rows(language: str, texts: Sequence[str], gold: Sequence[str], predicted: Sequence[str],
                    labels: Sequence[str], scores, protocol: str) -> list[dict]:
    """One object per scored text, as lm-evaluation-harness's ``--log_samples``: ``language, text, gold, predicted,
    probabilities`` (each label's, over the label set, rounded to 6 places) and ``protocol``; ``scores``: ``[N, C]``
    class log-probabilities."""
    probabilities = scores.float().softmax(dim=1).tolist()  # an ensemble's mean log-probabilities are not normalized
    return [{"language": language, "text": text, "gold": g, "predicted": guess,
             "probabilities": {label: round(q, 6) for label, q in zip(labels, p)}, "protocol": protocol}
            for text, g, guess, p in zip(texts, gold, predicted, probabilities)]


def per_class_table(results: pd.DataFrame) -> pd.DataFrame | None:
    """The per-class scores that came with an :func:`evaluate_prompts` table (``None`` if it has none)."""
    rows = results.attrs.get("per_class")
    if rows is None:
        return None
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=PER_CLASS_COLUMNS)
