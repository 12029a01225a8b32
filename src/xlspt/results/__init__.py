"""Results: per-language and per-class scores, confusion counts, group aggregates, device info, summaries.

Everything that turns predictions into numbers and tables, below the artifacts, the study and the
report: evaluation fills these tables, a run folder and the report read them.
"""

from .aggregate import CHANCE_SIB200, aggregate, format_comparison_table, format_results_table
from .classes import PER_CLASS_COLUMNS, confusion, format_per_class, per_class_rows, plot_confusion, write_class_reports
from .device import device_info, library_versions
from .metrics import RESULT_COLUMNS, language_result, per_class_table, results_table, score

__all__ = [
    "CHANCE_SIB200", "PER_CLASS_COLUMNS", "RESULT_COLUMNS", "aggregate", "confusion", "device_info", "format_comparison_table",
    "format_per_class", "format_results_table", "language_result", "library_versions", "per_class_rows",
    "per_class_table", "plot_confusion", "results_table", "score", "write_class_reports",
]
