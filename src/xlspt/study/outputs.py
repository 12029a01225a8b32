"""A run's files written into its folder: its results, summary and model card (``xlspt run``, the sweep store).

The names of a run folder's files are in :mod:`xlspt.layout`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..card import write_model_card
from ..classifiers import Classifier
from ..results.summary import results_summary, write_results


def write_run_results(out: Path, classifier: Classifier, results: pd.DataFrame, *, figures: bool = False,
                      predictions: bool = False) -> str:
    """Write one classifier's results, summary and model card into its run folder; returns the printed table."""
    table, text, summary = results_summary(classifier.metadata.summary_header(), results)
    write_results(out, results, text, summary, figures=figures, predictions=predictions)
    write_model_card(out, classifier.sidecar_dict(), results)
    return table
