"""Aggregating per-language results into one score with its spread, and printing them.

Like lm-evaluation-harness's group scores: the mean over languages, with the standard
deviation across languages and the standard error of the mean. Averages are given over
all languages evaluated, over the study's 52 when all were evaluated, and over the
languages in XGLM's and BLOOM's pretraining.
"""

from __future__ import annotations

import math

import pandas as pd

from ..data.languages import language_info, study_languages

#: The study's report is about SIB-200's seven topics.
CHANCE_SIB200 = 1 / 7


def _spread(values: pd.Series) -> dict[str, float]:
    n = int(values.size)
    std = float(values.std(ddof=1)) if n > 1 else 0.0
    return {"mean": float(values.mean()), "std": std, "stderr": std / math.sqrt(n) if n > 1 else 0.0, "n_languages": n}


def aggregate(results: pd.DataFrame, train_language: str | None = "eng_Latn") -> dict[str, dict]:
    """Group scores of a ``language, accuracy, macro_f1, n`` table.

    Keys: ``all`` (every language evaluated), ``transfer`` (all but the training language),
    ``study_52`` (when all 52 study languages were evaluated), ``xglm_pretraining`` and
    ``bloom_pretraining`` (the study languages in that model family's pretraining).
    Each value maps ``accuracy`` and ``macro_f1`` to ``mean, std, stderr, n_languages``.
    """
    groups: dict[str, pd.DataFrame] = {"all": results}
    transfer = results[results["language"] != train_language]
    if 0 < len(transfer) < len(results):
        groups["transfer"] = transfer
    study = {lang.code for lang in study_languages()}
    if study <= set(results["language"]):
        groups["study_52"] = results[results["language"].isin(study)]
    for family in ("xglm", "bloom"):
        members = [c for c in results["language"] if c in study and language_info(c).in_pretraining_of(family)]
        if members:
            groups[f"{family}_pretraining"] = results[results["language"].isin(members)]
    return {
        name: {metric: _spread(frame[metric]) for metric in ("accuracy", "macro_f1")} for name, frame in groups.items()
    }


def format_results_table(results: pd.DataFrame, groups: dict[str, dict] | None = None, n_classes: int = 7) -> str:
    """A plain-text table: one row per language (accuracy and macro-F1 in %), then the group means and
    chance (one in ``n_classes``: SIB-200 has 7)."""
    lines = [f"{'language':<10} {'name':<22} {'accuracy':>9} {'macro-F1':>9} {'n':>5}"]
    lines.append("-" * len(lines[0]))
    for row in results.itertuples(index=False):
        name = language_info(row.language).display_name
        lines.append(f"{row.language:<10} {name[:22]:<22} {100 * row.accuracy:>8.1f}% {100 * row.macro_f1:>8.1f}% {row.n:>5}")
    if groups:
        lines.append("-" * len(lines[0]))
        for name, metrics in groups.items():
            acc, f1 = metrics["accuracy"], metrics["macro_f1"]
            label = f"mean {name} ({acc['n_languages']})"
            spread = f"   ±{100 * acc['stderr']:.1f} (s.e.)" if acc["n_languages"] > 1 else ""
            lines.append(f"{label:<33} {100 * acc['mean']:>8.1f}% {100 * f1['mean']:>8.1f}%{spread}")
    lines.append(f"chance: {100 / n_classes:.1f}%")
    return "\n".join(lines)


def format_comparison_table(names: list[str], groups: list[dict[str, dict]]) -> str:
    """One row per prompt: its mean accuracy over each language group (the groups of the first prompt)."""
    columns = list(groups[0])
    width = max(len("prompt"), *(len(n) for n in names))
    lines = [f"{'prompt':<{width}} " + " ".join(f"{c:>17}" for c in columns)]
    lines.append("-" * len(lines[0]))
    for name, group in zip(names, groups):
        cells = []
        for column in columns:
            acc = group.get(column, {}).get("accuracy")
            cells.append(f"{100 * acc['mean']:>7.1f}% ±{100 * acc['stderr']:>4.1f} ({acc['n_languages']:>2})" if acc else f"{'-':>17}")
        lines.append(f"{name:<{width}} " + " ".join(f"{c:>17}" for c in cells))
    lines.append("mean accuracy over the languages of each group, ± its standard error (number of languages)")
    return "\n".join(lines)
