"""Published anchors: other systems' accuracy on SIB-200's test split, per language (``anchors.tsv``).

The table is Table 8 of the SIB-200 paper (Adelani et al., EACL 2024, https://aclanthology.org/2024.eacl-long.14;
CC BY 4.0), as the file's header says: for each of its 204 languages, models trained on the language's own
data, XLM-R fine-tuned on English (or Arabic, or Chinese) and tested zero-shot, and GPT-3.5 and GPT-4 prompted
in English. Reports and documents set xlspt's results beside these anchors on the same test sentences:
:func:`anchor_mean` over a set of languages, :func:`anchor_accuracy` for one.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from typing import Iterable

from ..errors import XlsptError

ANCHORS_FILE = "anchors.tsv"
#: Where the figures come from, in a few words (tables and captions name it).
SOURCE = "SIB-200 paper (Adelani et al., EACL 2024), Table 8"


@dataclass(frozen=True)
class Anchor:
    """One published system: its column in ``anchors.tsv``, a short name and what it is."""

    column: str
    name: str
    description: str


GPT4 = Anchor("gpt4_zero_shot", "GPT-4", "GPT-4 prompted in English, no examples")
XLMR = Anchor("xlmr_zero_shot_from_eng", "XLM-R", "XLM-R fine-tuned on English's 701 training examples, tested zero-shot")
GPT35 = Anchor("gpt35_zero_shot", "GPT-3.5", "GPT-3.5 prompted in English, no examples")
#: The anchors xlspt's results are compared with, in the order tables show them.
ANCHORS: tuple[Anchor, ...] = (GPT4, XLMR, GPT35)


@lru_cache(maxsize=1)
def anchor_table() -> dict[str, dict[str, float]]:
    """Every row of ``anchors.tsv``: language code -> column -> accuracy as a fraction (0-1, as xlspt's results)."""
    text = files("xlspt.data").joinpath(ANCHORS_FILE).read_text(encoding="utf-8")
    rows = csv.DictReader((line for line in text.splitlines() if not line.startswith("#")), delimiter="\t")
    return {row.pop("language"): {column: float(value) / 100 for column, value in row.items()} for row in rows}


def _column(anchor: Anchor | str) -> str:
    column = anchor.column if isinstance(anchor, Anchor) else anchor
    if column not in next(iter(anchor_table().values())):
        raise XlsptError(f"{ANCHORS_FILE} has no column {column!r}")
    return column


def anchor_accuracy(anchor: Anchor | str, language: str) -> float | None:
    """The anchor's accuracy (0-1) on ``language``, or None where the table lacks the language."""
    row = anchor_table().get(language)
    return None if row is None else row[_column(anchor)]


def anchor_mean(anchor: Anchor | str, languages: Iterable[str]) -> tuple[float | None, int]:
    """The anchor's mean accuracy (0-1) over those of ``languages`` that the table has, and how many it has."""
    column = _column(anchor)
    values = [anchor_table()[code][column] for code in dict.fromkeys(languages) if code in anchor_table()]
    return (sum(values) / len(values) if values else None), len(values)
