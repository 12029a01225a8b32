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
    loaded, labels: Sequence[str], rows: list[dict], per_class: list[dict], confusions: dict
) -> pd.DataFrame:
    """The per-language table (:data:`RESULT_COLUMNS`); the per-class details and the device ride along in ``attrs``
    (not as columns: one row per language stays the schema)."""
    table = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    table.attrs.update(labels=list(labels), per_class=per_class, confusion=confusions,
                       device=device_info(loaded.device, loaded.dtype))
    return table


def per_class_table(results: pd.DataFrame) -> pd.DataFrame | None:
    """The per-class scores that came with an :func:`evaluate_prompts` table (``None`` if it has none)."""
    rows = results.attrs.get("per_class")
    if rows is None:
        return None
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=PER_CLASS_COLUMNS)
