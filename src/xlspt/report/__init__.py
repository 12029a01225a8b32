"""Reporting: aggregation of per-language results and human-readable tables."""

from .summary import aggregate, format_results_table

__all__ = ["aggregate", "format_results_table"]
