"""Per-class scores and confusion matrices for one language's predictions, as CSV, PNG and text.

``gold`` and ``predicted`` are label strings of the same length N; ``labels`` fixes the C classes
and their order everywhere (rows, matrix axes, tick labels). A prediction outside ``labels``
(e.g. ``"abstain"``) counts as wrong: it lowers its gold class's recall, and it has no column in
the confusion matrix, so that class's row sums to less than its support.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from ..files import write_with_atomic
from ..layout import CONFUSION_DIR, PER_CLASS_FILE

PER_CLASS_COLUMNS = ["language", "label", "precision", "recall", "f1", "support"]
DPI = 130


def per_class_rows(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str], language: str) -> list[dict]:
    """C rows (one per label, in ``labels``' order) with :data:`PER_CLASS_COLUMNS`; scores in [0, 1].

    ``zero_division=0``: a class never predicted (or absent from gold) scores 0 rather than warning.
    """
    precision, recall, f1, support = precision_recall_fscore_support(
        list(gold), list(predicted), labels=list(labels), zero_division=0)
    return [{"language": language, "label": label, "precision": float(p), "recall": float(r), "f1": float(f),
             "support": int(s)} for label, p, r, f, s in zip(labels, precision, recall, f1, support)]


def confusion(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """``[C, C]`` int counts: row i = gold ``labels[i]``, column j = predicted ``labels[j]``.

    Pairs whose gold or prediction is outside ``labels`` are not counted (sklearn drops them).
    """
    return confusion_matrix(list(gold), list(predicted), labels=list(labels)).astype(np.int64)


def plot_confusion(matrix: np.ndarray, labels: Sequence[str], title: str, path: str | Path) -> Path:
    """Draw the ``[C, C]`` ``matrix`` as a heat map saved as PNG at ``path``; return ``path``.

    The colour is the row-normalised share (what fraction of a gold class went to each column), so
    classes of different sizes are comparable; the text in each cell is the raw count.
    """
    from matplotlib.figure import Figure  # here, so that evaluating without figures never loads matplotlib

    matrix = np.asarray(matrix)
    n = len(labels)
    if matrix.shape != (n, n):
        raise ValueError(f"matrix of shape {matrix.shape} for {n} labels")
    totals = matrix.sum(axis=1, keepdims=True)
    # A gold class with no counted pairs gets an all-zero row instead of a division by zero.
    share = np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)
    side = max(4.0, 1.5 + 0.5 * n)  # ~0.5 inch per cell keeps counts legible up to 20 classes
    fontsize = max(6.0, 11.0 - 0.25 * n)
    # No pyplot: the figure is not registered globally, so there is nothing to close and no leak.
    figure = Figure(figsize=(side + 1.2, side), layout="constrained")  # + room for the colour bar
    ax = figure.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(n):
        for j in range(n):
            # White text on the dark half of the colour map, so every count stays readable.
            ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=fontsize,
                    color="white" if share[i, j] > 0.5 else "black")
    long_labels = max(len(str(label)) for label in labels) > 3 or n > 10
    ax.set_xticks(range(n), [str(label) for label in labels], fontsize=fontsize,
                  rotation=45 if long_labels else 0, ha="right" if long_labels else "center",
                  rotation_mode="anchor")
    ax.set_yticks(range(n), [str(label) for label in labels], fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title, fontsize=10)
    figure.colorbar(image, ax=ax, shrink=0.8, label="share of the gold class")
    path = Path(path)
    # The temporary file ends in .tmp, so the format must be named.
    write_with_atomic(path, lambda tmp: figure.savefig(tmp, format="png", dpi=DPI))
    return path


def safe_name(language: str) -> str:
    """``language`` with every character outside ``[A-Za-z0-9_.-]`` replaced by ``_``."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", language)
    return "_" if name in ("", ".", "..") else name  # never a path that means a directory


def write_class_reports(out_dir: str | Path, per_class: pd.DataFrame, confusions: Mapping[str, np.ndarray],
                        labels: Sequence[str]) -> list[Path]:
    """Write ``out_dir/per_class.csv`` (:data:`PER_CLASS_COLUMNS`) and ``out_dir/confusion/<language>.png``
    for each ``[C, C]`` matrix in ``confusions``; return the paths written, CSV first."""
    out_dir = Path(out_dir)
    names = {language: safe_name(language) for language in confusions}
    if len(set(names.values())) < len(names):  # two languages must never overwrite each other's figure
        raise ValueError(f"languages collide once sanitised: {names}")
    csv = out_dir / PER_CLASS_FILE
    table = per_class[PER_CLASS_COLUMNS]
    write_with_atomic(csv, lambda tmp: table.to_csv(tmp, index=False, float_format="%.6f"))
    written = [csv]
    for language, matrix in confusions.items():
        total = int(np.asarray(matrix).sum())
        written.append(plot_confusion(matrix, labels, f"{language}: confusion matrix (n = {total})",
                                      out_dir / CONFUSION_DIR / f"{names[language]}.png"))
    return written


def format_per_class(per_class: pd.DataFrame, language: str) -> str:
    """Fixed-width table of ``language``'s rows: label, precision, recall, F1 (in %, one decimal), support."""
    rows = per_class[per_class["language"] == language]
    if rows.empty:
        raise ValueError(f"no per-class rows for {language!r}")
    width = max(5, *(len(str(label)) for label in rows["label"]))
    lines = [f"{'label':<{width}}  {'prec %':>6}  {'rec %':>6}  {'F1 %':>6}  {'support':>7}"]
    for row in rows.itertuples(index=False):
        lines.append(f"{str(row.label):<{width}}  {100 * row.precision:>6.1f}  {100 * row.recall:>6.1f}  "
                     f"{100 * row.f1:>6.1f}  {int(row.support):>7d}")
    return "\n".join(lines)
