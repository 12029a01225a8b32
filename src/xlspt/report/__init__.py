"""Reporting: aggregation of per-language results and human-readable tables."""

from .summary import aggregate, format_comparison_table, format_results_table

__all__ = ["aggregate", "format_comparison_table", "format_results_table"]
