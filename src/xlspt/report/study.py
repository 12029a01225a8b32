"""The study report: what a result store holds, as tables, figures, tested findings and ``report.md``.

:func:`write_report` reads every run record of a result store (:func:`.grid.read_store`), keeps
the finished runs (``status == "done"``), groups the seeds of each configuration together and
writes, into one output directory:

* ``runs.csv``: one row per run and language (the configuration, ``run_id``, ``language``,
  ``accuracy``, ``macro_f1``);
* ``summary.csv``: per configuration, the mean and standard deviation over seeds of the average
  accuracy over several language groups, and the configuration's parameter and storage cost;
* ``languages.csv``: per configuration and language, the accuracy averaged over seeds, with the published
  anchors' accuracy on the language beside it (:mod:`xlspt.data.anchors`);
* ``anchors.csv``: per configuration, its mean accuracy beside the published anchors' on the same languages
  (:mod:`.anchors`);
* ``findings.csv``: the study's four findings, tested per model (:mod:`.findings`);
* ``correlations.csv``: per configuration, Spearman correlations of per-language accuracy with
  the language's share of pretraining data and its typological distance from the training language;
* the figures that the grid has the arms for (:mod:`.figures`), and ``report.md``, which shows
  all of it.

Configurations (every config field but ``seed``) are named in :mod:`.grid`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import XlsptError
from ..files import write_text_atomic
from ..study.records import RunRecord
from ..study.store import StoreContents
from . import adapters, anchors
from .figures import DrawnFigure, draw_all
from .figure_data import correlation_table
from .findings import findings_table
from .grid import Grid, build_grid, config_value, language_table, read_store, summary_table
from .sections import (
    anchors_sections, baseline_section, configurations_section, correlations_section, cost_section, failures_section,
    figures_section, findings_section, protocols_section, store_section, summary_section,
)
from .tables import baseline_table, consistency_warnings, protocols_table, results_table


@dataclass
class _Tables:
    """The tables written beside ``report.md``, which shows them."""

    findings: pd.DataFrame
    correlations: pd.DataFrame
    baseline: pd.DataFrame | None  # only with probe runs
    protocols: pd.DataFrame | None  # only with calibrated runs
    calibrated_runs: int
    anchors: pd.DataFrame  # per configuration, beside the published anchors
    adapters: list[str]  # the section on low-rank adapters (none without LoRA runs)


def _write_csv(path: Path, frame: pd.DataFrame, written: list[Path]) -> None:
    write_text_atomic(path, frame.to_csv(index=False))
    written.append(path)


def _plain(value: Any) -> Any:
    """A table cell as a plain Python value (NaN -> None), for the returned dict."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def write_report(store: str | Path, out: str | Path) -> dict:
    """Read the result store ``store`` and write tables, figures and ``report.md`` into ``out``.

    Returns:
        ``{"files": [paths written], "runs": finished runs, "failed": failed runs,
        "warnings": [what the runs differ in], "findings": [one dict per row of the findings table]}``.

    Raises:
        XlsptError: ``store`` does not exist, is not a result store, or holds no finished run.
    """
    contents = read_store(store)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise XlsptError(f"--out {out} is a file: pass a directory for the report")
    # The study's analyses read zero-shot results only; calibrated runs get their own side-by-side table.
    study_runs = [r for r in contents.done if r.protocol == "zero-shot" and config_value(r, "method") == "prompt"]
    if not study_runs:
        raise XlsptError(f"{store} holds no zero-shot runs (only calibrated ones): the study's report needs calibration: zero-shot runs")
    grid = build_grid(study_runs)
    written: list[Path] = []
    warnings = consistency_warnings(contents.done)
    tables = _write_tables(contents, study_runs, grid, out, written)
    figures = draw_all(grid, tables.correlations, out)
    written += [f.path for f in figures if f.path is not None]
    lines = _report_lines(contents, grid, tables, figures, warnings, out)
    write_text_atomic(out / "report.md", "\n".join(lines))
    written.append(out / "report.md")
    return {
        "files": [str(p) for p in written],
        "runs": len(contents.done),
        "failed": len(contents.failed),
        "warnings": warnings,
        "findings": [{k: _plain(v) for k, v in row.items()} for row in tables.findings.to_dict("records")],
    }


def _write_tables(contents: StoreContents, study_runs: list[RunRecord], grid: Grid, out: Path, written: list[Path]) -> _Tables:
    """Write every CSV of the report, in the order ``written`` lists them."""
    probes = [r for r in contents.done if config_value(r, "method") == "probe"]
    lora = [r for r in contents.done if config_value(r, "method") == "lora"]
    # the sections below read zero-shot LoRA runs in their own section; other runs with a protocol are "calibrated"
    calibrated_runs = len(contents.done) - len(study_runs) - len(probes) - sum(r.protocol == "zero-shot" for r in lora)
    _write_csv(out / "runs.csv", results_table(contents.done), written)
    baseline = protocols = None
    if probes:
        baseline = baseline_table([r for r in contents.done if r.protocol == "zero-shot" and r.config.get("ensemble", 1) == 1])
        _write_csv(out / "baseline.csv", baseline, written)
    if calibrated_runs:
        protocols = protocols_table(contents.done)
        _write_csv(out / "protocols.csv", protocols, written)
    _write_csv(out / "summary.csv", summary_table(grid), written)
    _write_csv(out / "languages.csv", anchors.with_anchors(language_table(grid)), written)
    compared = anchors.comparison_table(grid, study_runs)
    _write_csv(out / "anchors.csv", compared, written)
    arms = adapters.adapter_arms(contents.done)
    adapter_rows = adapters.adapter_findings(arms)
    findings = findings_table(grid)
    if adapter_rows:
        findings = pd.concat([findings, pd.DataFrame(adapter_rows, columns=findings.columns)], ignore_index=True)
    _write_csv(out / "findings.csv", findings, written)
    adapter_lines = _adapter_outputs(arms, contents.done, adapter_rows, out, written)
    correlations = correlation_table(grid)
    _write_csv(out / "correlations.csv", correlations.drop(columns=["points"]), written)
    return _Tables(findings=findings, correlations=correlations, baseline=baseline, protocols=protocols,
                   calibrated_runs=calibrated_runs, anchors=compared, adapters=adapter_lines)


def _adapter_outputs(arms, records: list[RunRecord], rows: list[dict], out: Path, written: list[Path]) -> list[str]:
    """``adapters.csv`` (per language, each arm), ``adapter_costs.csv`` and ``adapters.png`` where the store holds
    LoRA runs with their matched arms; the report's section on them."""
    if arms is None:
        return []
    costs = figure = None
    if arms.complete:
        table = arms.language_table
        _write_csv(out / "adapters.csv", table, written)
        costs = adapters.adapter_cost_table(arms, records)
        _write_csv(out / "adapter_costs.csv", costs, written)
        if table["distance"].notna().sum() >= 3:
            adapters.adapters_plot(table, out / "adapters.png")
            written.append(out / "adapters.png")
            figure = "adapters.png"
    return adapters.adapters_section(arms, costs, rows, figure, records)


def _report_lines(contents: StoreContents, grid: Grid, tables: _Tables, figures: list[DrawnFigure], warnings: list[str],
                  out: Path) -> list[str]:
    """The lines of ``report.md``."""
    calibrated, probes = tables.protocols is not None, tables.baseline is not None
    return [
        "# Study report",
        "",
        f"Soft prompt tuning for cross-lingual transfer on SIB-200 (7 topics): {len(contents.done)} finished runs.",
        "",
        *([f"> **Warning:** {w}." for w in warnings] + [""] if warnings else []),
        *store_section(contents, grid),
        *configurations_section(grid),
        *summary_section(grid),
        *findings_section(tables.findings),
        *tables.adapters,
        *anchors_sections(grid, tables.anchors, anchors.language_set_table(grid), anchors.language_table(grid),
                          anchors.held_out_table(grid)),
        *figures_section(figures, out),
        *correlations_section(tables.correlations),
        *cost_section(grid),
        *failures_section(contents),
        *(protocols_section(tables.protocols, tables.calibrated_runs) if calibrated else []),
        *(baseline_section(tables.baseline) if probes else []),
        "## Files",
        "",
        "- `runs.csv`: one row per run and language (with its `protocol`); `summary.csv`: per configuration, over seeds; "
        "`languages.csv`: per configuration and language, over seeds, with the published anchors; `anchors.csv`: per "
        "configuration beside the published anchors; `findings.csv`; `correlations.csv`"
        + ("; `protocols.csv`: zero-shot and calibrated accuracy side by side" if calibrated else "")
        + ("; `baseline.csv`: soft prompts against the probe baseline." if probes else "."),
        "",
    ]
