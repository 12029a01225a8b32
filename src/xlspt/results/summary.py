"""The printed table, ``summary.txt`` and ``summary.json`` of evaluation results, and writing them into a folder.

Every file is written whole (atomically); results of several protocols are never mixed in one table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .._version import __version__
from ..calibration import describe_protocol
from ..errors import XlsptError
from ..files import write_json_atomic, write_text_atomic, write_with_atomic
from ..layout import PER_CLASS_FILE, PREDICTIONS_FILE, RESULTS_FILE, SUMMARY_FILE, SUMMARY_JSON
from .aggregate import aggregate, format_comparison_table, format_results_table
from .classes import write_class_reports
from .metrics import per_class_table


def write_results(out: Path, results: pd.DataFrame, summary_text: str, summary: dict, *, figures: bool = False,
                  predictions: bool = False) -> None:
    """``results.csv``, ``summary.txt``, ``summary.json`` and ``per_class.csv`` in ``out``, each written whole;
    with ``figures`` also a confusion matrix per language (``confusion/<lang>.png``), with ``predictions`` every
    scored text (``predictions.jsonl``: :func:`~xlspt.results.metrics.prediction_rows`)."""
    write_with_atomic(out / RESULTS_FILE, lambda tmp: results.to_csv(tmp, index=False, float_format="%.6f"))
    if predictions and "predictions" in results.attrs:
        write_text_atomic(out / PREDICTIONS_FILE, "".join(json.dumps(row, ensure_ascii=False) + "\n"
                                                          for row in results.attrs["predictions"]))
    per_class = per_class_table(results)
    if per_class is not None:
        if figures:
            matrices = {lang: np.asarray(m) for lang, m in results.attrs.get("confusion", {}).items()}
            write_class_reports(out, per_class, matrices, results.attrs["labels"])
        else:
            write_with_atomic(out / PER_CLASS_FILE, lambda tmp: per_class.to_csv(tmp, index=False, float_format="%.6f"))
    write_text_atomic(out / SUMMARY_FILE, summary_text)
    write_json_atomic(out / SUMMARY_JSON, summary)


@dataclass
class Header:
    """What a summary says about the classifier behind the results (typed sidecars make it: ``summary_header()``).

    Attributes:
        model: the base model's name.
        train_language: the language it was trained on (the ``transfer`` group leaves it out).
        n_classes: the size of its label set (chance is one in ``n_classes``).
        lines: what it is and how it was trained, one line each, after the title line.
        kind: ``soft prompt`` or ``probe baseline``, for the title line.
        ensemble: an ensemble's ``size, seeds, sampling, distinct_train_examples``.
    """

    model: str
    train_language: str | None
    n_classes: int
    lines: list[str] = field(default_factory=list)
    kind: str = "soft prompt"
    ensemble: dict | None = None


def results_summary(header: Header, results: pd.DataFrame) -> tuple[str, str, dict]:
    """The printed table, the ``summary.txt`` text and the ``summary.json`` content of one classifier's results."""
    groups = aggregate(results, header.train_language)
    table = format_results_table(results, groups, header.n_classes)
    protocol = protocol_of(results)
    device = results.attrs.get("device")
    limit = results.attrs.get("limit")
    text = [
        f"xlspt {__version__} - {header.kind} on {header.model}",
        *header.lines,
        f"protocol: {describe_protocol(protocol)}",
        *([f"device: {describe_device(device)}"] if device else []),
        *([f"limit: the first {limit} texts of each language (--limit)"] if limit else []),
        "",
    ]
    summary = {"model": header.model, "protocol": protocol, "groups": groups}
    if limit:
        summary["limit"] = limit
    if device:
        summary["device"] = device
    if header.ensemble:
        summary["ensemble"] = dict(header.ensemble)
    return f"protocol: {describe_protocol(protocol)}\n{table}", "\n".join(text) + table + "\n", summary


def describe_device(device: dict) -> str:
    """``{"device": "cpu", "name": ..., "threads": 2, "dtype": ...}`` -> ``cpu (AMD EPYC, 2 threads, bfloat16)``."""
    details = [device.get("name"), f"{device['threads']} thread{'s' if device['threads'] > 1 else ''}" if device.get("threads") else None, device.get("dtype")]
    return f"{device.get('device')} ({', '.join(d for d in details if d)})"


def protocol_of(results: pd.DataFrame) -> str:
    """The one protocol of a results table (results of several protocols are never mixed in one table)."""
    protocols = sorted(set(results["protocol"])) if "protocol" in results else ["zero-shot"]
    if len(protocols) > 1:
        raise XlsptError(f"results of several protocols ({', '.join(protocols)}) in one table: keep them apart")
    return protocols[0] if protocols else "zero-shot"


def comparison(names: list[str], headers: list[Header], all_results: list[pd.DataFrame]) -> tuple[str, pd.DataFrame, dict]:
    """Several prompts' tables and a row per prompt; results in long form with a ``prompt`` column."""
    sections, groups = [], []
    for name, header, results in zip(names, headers, all_results):
        groups.append(aggregate(results, header.train_language))
        sections.append(f"== {name} [{protocol_of(results)}]\n{format_results_table(results, groups[-1], header.n_classes)}")
    text = "\n\n".join([*sections, f"== comparison\n{format_comparison_table(list(names), groups)}"])
    combined = pd.concat([results.assign(prompt=name) for name, results in zip(names, all_results)], ignore_index=True)
    combined = combined[["prompt", *all_results[0].columns]]
    if all("per_class" in r.attrs for r in all_results):  # one per-class table, a prompt column first
        combined.attrs = {"per_class": [{"prompt": n, **row} for n, r in zip(names, all_results) for row in r.attrs["per_class"]],
                          "labels": all_results[0].attrs["labels"]}
    if all("predictions" in r.attrs for r in all_results):  # likewise every scored text, its prompt first
        combined.attrs["predictions"] = [{"prompt": n, **row} for n, r in zip(names, all_results)
                                         for row in r.attrs["predictions"]]
    summary = {"model": headers[0].model, "prompts": [
        {"prompt": n, "protocol": protocol_of(r), "groups": g} for n, r, g in zip(names, all_results, groups)]}
    return text, combined, summary


def write_comparison(out: Path, text: str, combined: pd.DataFrame, summary: dict) -> None:
    n = len(summary["prompts"])
    write_results(out, combined, f"xlspt {__version__} - {n} prompts on {summary['model']}\n\n{text}\n", summary,
                  predictions=True)
