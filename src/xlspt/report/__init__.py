"""The study report: tables, figures and the study's findings from a result store (read through
:class:`~xlspt.study.store.ResultStore`). Nothing below this package imports it."""
