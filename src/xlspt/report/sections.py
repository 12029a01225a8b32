"""The sections of ``report.md``, each a list of Markdown lines."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from ..data.anchors import ANCHORS, GPT35, SOURCE
from ..results.aggregate import CHANCE_SIB200
from ..study.store import StoreContents
from .anchors import COMPARED, role
from .figures import DrawnFigure
from .grid import METRICS, Grid, describe, sort_key

MAX_REPORTED_FAILURES = 20


# ----------------------------------------------------------------------------- cells and tables


def _percent(value: Any, spread: Any = None) -> str:
    if value is None or pd.isna(value):
        return "–"
    text = f"{100 * value:.1f}%"
    if spread is not None and not pd.isna(spread):
        text += f" ± {100 * spread:.1f}"
    return text


def _number(value: Any) -> str:
    if value is None or pd.isna(value):
        return "–"
    return f"{int(value):,}"


def _p_value(value: Any) -> str:
    if value is None or pd.isna(value):
        return "–"
    if value == 0:
        return "0"  # a perfect rank correlation: scipy's p underflows
    return f"{value:.2g}" if value >= 1e-4 else f"{value:.1e}"


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of ``frame``'s cells as text."""
    def text(value: Any) -> str:
        return ("–" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)).replace("|", "\\|")

    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(text(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


# ----------------------------------------------------------------------------- sections


def _values(grid: Grid, column: str) -> str:
    values = sorted({json.dumps(v, default=str) for v in grid.configs[column]}, key=lambda v: sort_key(json.loads(v)))
    return ", ".join(values)


def _protocol_line(grid: Grid) -> str:
    """Which evaluation protocol produced the results (design notes, section 7)."""
    protocol_fields = [c for c in grid.config_columns if "protocol" in c or "calibrat" in c]
    if protocol_fields:
        values = "; ".join(f"`{c}`: {_values(grid, c)}" for c in protocol_fields)
        return (f"Protocol: as recorded in the runs' configurations ({values}). It is part of every "
                "configuration, so results of different protocols are never averaged together.")
    return ("Protocol: zero-shot (the study's): a prompt trained on English labelled examples only, "
            "target-language test sentences classified one by one, with no calibration and no "
            "target-language data. Every config field is part of a configuration, so results of "
            "different settings are never averaged together.")


def store_section(contents: StoreContents, grid: Grid) -> list[str]:
    models = sorted({str(m) for m in grid.configs["model"]})
    languages = sorted(grid.by_language["language"].unique())
    lines = [
        "## What the store holds",
        "",
        f"Store: `{contents.root}`. Runs finished: **{len(contents.done)}**, failed: **{len(contents.failed)}** "
        f"(left out), unfinished: {len(contents.unfinished)} (no record yet, left out)"
        + (f", unreadable records: {len(contents.unreadable)} (left out)" if contents.unreadable else "")
        + f". {len(grid.configs)} configurations (seeds grouped together), {len(languages)} languages evaluated.",
        "",
        f"Models: {', '.join(f'`{m}`' for m in models)}.",
        "",
        _protocol_line(grid),
        "",
        "| setting | values in the store |",
        "|---|---|",
    ]
    for column in grid.config_columns:
        if column == "langs":
            continue  # language lists are long: summarised below
        marker = " (varies)" if column in grid.varying else ""
        lines.append(f"| {column}{marker} | {_values(grid, column).replace('|', '/')} |")
    seeds = sorted({s for s in grid.runs["seed"]}, key=sort_key)
    lines.append(f"| seed | {', '.join(str(s) for s in seeds)} |")
    lines.append(f"| languages evaluated | {len(languages)}: {', '.join(languages)} |")
    lines.append("")
    environments = grid.runs["environment"].unique()
    if len(environments) > 1:
        lines += [
            f"> **Warning:** the runs in these tables differ in software versions or device "
            f"({len(environments)} environments). Differences between configurations may partly come "
            "from that. Run counts per environment:",
            ">",
        ]
        for environment, count in grid.runs["environment"].value_counts().items():
            lines.append(f"> - {count} runs: `{environment}`")
        mixed = [i for i in grid.configs.index if grid.configs.at[i, "mixed_environment"]]
        if mixed:
            lines.append(f">\n> Configurations whose seeds ran in different environments: {', '.join(mixed)}.")
        lines.append("")
    if contents.unreadable:
        lines += ["Unreadable records (left out):", ""] + [f"- `{u}`" for u in contents.unreadable] + [""]
    return lines


def configurations_section(grid: Grid) -> list[str]:
    fields = [c for c in grid.label_fields if c != "langs"]  # language lists are long: counted instead
    table = pd.DataFrame({"id": grid.configs.index})
    for column in fields:
        table[column] = [describe({column: v}, [column]) for v in grid.configs[column]]
    table["languages"] = grid.configs["n_languages"].to_numpy()
    table["seeds"] = grid.configs["seeds"].to_numpy()
    return ["## Configurations", "", "Ids used in every table and figure below, with the settings that vary in the store:",
            "", markdown_table(table), ""]


def summary_section(grid: Grid) -> list[str]:
    table = pd.DataFrame({"id": grid.configs.index, "configuration": grid.configs["label"]})
    shown = [name for name in METRICS if grid.configs[f"{name}_mean"].notna().any()]
    for name in shown:
        table[METRICS[name]] = [_percent(m, s) for m, s in zip(grid.configs[f"{name}_mean"], grid.configs[f"{name}_std"])]
    table["seeds"] = grid.configs["n_seeds"].to_numpy()
    table["languages"] = grid.configs["n_languages"].to_numpy()
    missing = [METRICS[name] for name in METRICS if name not in shown]
    return [
        "## Accuracy per configuration",
        "",
        "Average accuracy over a group of languages, mean ± standard deviation over seeds (no ± with one seed). "
        f"Chance is {100 * CHANCE_SIB200:.1f}%. The 52-language average needs all 52 evaluated; the pretraining "
        "average exists for XGLM and BLOOM models only (their published per-language shares)."
        + (f" No configuration has: {', '.join(missing)}." if missing else ""),
        "",
        markdown_table(table.reset_index(drop=True)),
        "",
    ]


def _effect(effect: float, unit: str) -> str:
    if pd.isna(effect):
        return "–"
    rho = "Spearman's rho"
    if unit.startswith(rho):  # a correlation, not a number of points
        return f"rho {effect:+.2f}{unit.removeprefix(rho)}"
    return f"{effect:+.1f} {unit}"


def findings_section(findings: pd.DataFrame) -> list[str]:
    table = pd.DataFrame({
        "finding": findings["finding"],
        "model": findings["model"],
        "verdict": findings["verdict"],
        "effect": [_effect(e, u) for e, u in zip(findings["effect"], findings["effect_unit"])],
        "languages": findings["n_languages"].map(_number),
        "comparisons": findings["n_comparisons"].map(_number),
        "test": findings["test"],
        "p": findings["p_value"].map(_p_value),
        "p (opposite)": findings["p_value_opposite"].map(_p_value),
        "detail": findings["detail"],
    })
    return [
        "## Findings of the study, tested on this store",
        "",
        "Each finding is tested per model and, with several models, pooled over them; languages are the "
        "units (transfer languages only, accuracy averaged over seeds first, and over the matched comparisons "
        "of a model). *p* is the one-sided p-value in the direction the study reports and *p (opposite)* the "
        "one in the other direction: **supported** when p < 0.05, **contradicted** when p (opposite) < 0.05, "
        "otherwise **not supported** (no significant effect). For reparameterization the verdict rests on "
        "the shares of languages helped and hurt with their 95% Wilson intervals (supported when both lower "
        "bounds reach 10%, contradicted when either upper bound stays below 10%). For distance, rho is "
        "Spearman's between each language's gain from freezing and its typological distance from the training "
        "language; the detail gives the slopes of accuracy against distance with and without MF (least squares, "
        "95% intervals) and their difference (for two falling slopes, positive: flatter with MF). **not enough runs** means "
        "the store lacks the arms to compare.",
        "",
        markdown_table(table),
        "",
    ]


def figures_section(figures: list[DrawnFigure], out: Path) -> list[str]:
    lines = ["## Figures", ""]
    for figure in figures:
        lines.append(f"### {figure.title}")
        lines.append("")
        if figure.path is None:
            lines.append(f"*Not drawn: {figure.skipped}*")
        else:
            lines.append(f"![{figure.title}]({figure.path.relative_to(out).as_posix()})")
            lines.append("")
            lines.append(figure.caption)
        lines.append("")
    return lines


def correlations_section(correlations: pd.DataFrame) -> list[str]:
    if correlations.empty:
        return []

    def cell(row: pd.Series) -> str:
        if pd.isna(row["rho"]):
            return f"– (n = {row['n_languages']})"
        return f"{row['rho']:+.2f} (p = {_p_value(row['p_value'])}, n = {row['n_languages']})"

    # One row per configuration, one column per quantity correlated with accuracy.
    table = correlations.assign(cell=correlations.apply(cell, axis=1)).pivot_table(
        index=["config_id", "configuration"], columns="against", values="cell", aggfunc="first", sort=False)
    table = table.reset_index().rename(columns={"config_id": "id"})
    table.columns.name = None
    left_out = correlations.groupby("against")["left_out"].max()
    notes = "; ".join(f"{against}: up to {n} left out" for against, n in left_out.items() if n)
    return [
        "## Transfer against pretraining share and typological distance",
        "",
        "Spearman's rho over the transfer languages between seed-averaged accuracy and the language's share "
        "of the model family's pretraining data (XGLM and BLOOM only; languages outside its pretraining are "
        "left out), and between accuracy and the language's typological distance from the training language "
        "(cosine distance of URIEL syntax, phonology and inventory vectors, from lang2vec; languages URIEL "
        "does not know are left out)." + (f" Languages left out per configuration: {notes}." if notes else ""),
        "",
        markdown_table(table),
        "",
    ]


def cost_section(grid: Grid) -> list[str]:
    table = pd.DataFrame({
        "id": grid.configs.index,
        "configuration": grid.configs["label"],
        "trainable parameters": grid.configs["trainable_parameters"].map(_number),
        "stored bytes": grid.configs["stored_bytes"].map(_number),
        "transfer accuracy": [_percent(m, s) for m, s in zip(grid.configs["transfer_mean"], grid.configs["transfer_std"])],
    })
    return ["## Parameters and storage per configuration", "",
            "Parameters that trained (the prompt and its reparameterization network, plus the model's without MF) "
            "and bytes a user keeps to reuse the result, next to the mean transfer accuracy over seeds.", "",
            markdown_table(table), ""]


def failures_section(contents: StoreContents) -> list[str]:
    if not contents.failed:
        return []
    lines = ["## Failed runs (left out of every table)", ""]
    for record in contents.failed[:MAX_REPORTED_FAILURES]:
        error = (record.error or "no error message").strip().splitlines()
        lines.append(f"- `{record.run_id}`: {error[0] if error else 'no error message'}")
    if len(contents.failed) > MAX_REPORTED_FAILURES:
        lines.append(f"- ... and {len(contents.failed) - MAX_REPORTED_FAILURES} more")
    lines.append("")
    return lines


def protocols_section(protocols: pd.DataFrame, count: int) -> list[str]:
    shown = protocols.copy()
    for column in shown.columns:
        if "[" in column:
            shown[column] = shown[column].map(_percent)
    return [
        "## Calibrated runs",
        "",
        f"{count} runs used a calibration protocol (a: no target-language data; b: unlabeled target-language text). "
        "The sections above read zero-shot runs only; here the protocols sit side by side, never averaged together "
        "(mean accuracy over all languages and over the transfer languages).",
        "",
        markdown_table(shown),
        "",
    ]


def baseline_section(table: pd.DataFrame) -> list[str]:
    lines = ["## Soft prompts against the probe baseline", "",
             "The probe is a logistic regression on the frozen model's read-out state of text + EOS (no prompt), "
             "fitted on the same k-shot sample. Mean accuracy over languages, averaged over seeds.", "",
             "| model | shots | prompt configuration | prompt | probe | prompt - probe | transfer: prompt | transfer: probe | languages where the prompt wins |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for row in table.itertuples():
        lines.append(f"| {row.model} | {row.shots} | {row.prompt_config} | {100 * row.prompt_all:.1f}% | {100 * row.probe_all:.1f}% | "
                     f"{100 * row.prompt_minus_probe:+.1f} | {100 * row.prompt_transfer:.1f}% | {100 * row.probe_transfer:.1f}% | "
                     f"{row.languages_prompt_better}/{row.languages} |")
    return [*lines, ""] if len(table) else [*lines[:4], "(no model and shots with both methods)", ""]


def _points(value: Any) -> str:
    return "–" if value is None or pd.isna(value) else f"{100 * value:+.1f}"


def anchor_comparison(comparison: pd.DataFrame) -> pd.DataFrame:
    """The printed table of :func:`~xlspt.report.anchors.comparison_table`: each configuration beside the anchors."""
    table = pd.DataFrame({
        "id": comparison["config_id"], "configuration": comparison["configuration"], "seeds": comparison["n_seeds"],
        "English": [_percent(m, s) for m, s in zip(comparison["english_mean"], comparison["english_std"])],
        "accuracy": [_percent(m, s) for m, s in zip(comparison["accuracy_mean"], comparison["accuracy_std"])],
    })
    for anchor in COMPARED:
        table[anchor.name] = comparison[anchor.column].map(_percent)
        table[f"vs {anchor.name}"] = comparison[f"{anchor.column}_difference"].map(_points)
        table[f"languages above {anchor.name}"] = [f"{above} of {n}" for above, n in
                                                   zip(comparison[f"{anchor.column}_above"], comparison["languages"])]
    return table


def _each_language_beside_anchors(grid: Grid, languages: pd.DataFrame) -> list[str]:
    shown = [c for c in languages.columns if c in grid.configs.index]
    per_language = pd.DataFrame({"language": languages["language"]})
    for anchor in ANCHORS:
        per_language[anchor.name] = languages[anchor.column].map(_percent)
    for config_id in shown:
        per_language[config_id] = [_percent(m, s) for m, s in zip(languages[config_id], languages[f"{config_id}_std"])]
    described = "; ".join(f"{c}: {grid.configs.at[c, 'label']} ({role(grid, c)})" for c in shown)
    return [
        "## Each language beside the published anchors",
        "",
        f"Per language, the anchors and the seed-averaged accuracy (± std over seeds) of {described}. "
        "The figure *Each language beside the published anchors* draws them.",
        "",
        markdown_table(per_language),
        "",
    ]


def anchors_sections(grid: Grid, comparison: pd.DataFrame, sets: pd.DataFrame, languages: pd.DataFrame,
                     held_out: pd.DataFrame) -> list[str]:
    """The store's results beside the published anchors (:mod:`.anchors`): per configuration, per language set,
    per language evaluated here, and the held-out languages it did not evaluate."""
    if comparison.empty:
        return ["## Against published anchors", "",
                f"*None of the languages evaluated here is in the {SOURCE}: no anchors to compare with.*", ""]
    gpt4, xlmr = COMPARED
    table = anchor_comparison(comparison)
    lines = [
        "## Against published anchors",
        "",
        f"Published systems on the same test sentences, from the {SOURCE} (`src/xlspt/data/anchors.tsv`, CC BY 4.0): "
        f"**{gpt4.name}**, {gpt4.description}; **{xlmr.name}**, {xlmr.description}. Each configuration is compared "
        "over its evaluated languages that the paper's table has (all of SIB-200's but nqo_Nkoo): *accuracy* is its "
        "mean over them (± std over seeds), each anchor's is its mean over the same languages, *vs* is the "
        "configuration's accuracy minus the anchor's in points (negative: the anchor is ahead), and *languages "
        "above* counts the languages where the configuration's seed-averaged accuracy is higher than the anchor's.",
        "",
        markdown_table(table),
        "",
    ]
    names = {anchor.column: anchor.name for anchor in ANCHORS}
    shown_sets = sets.assign(**{names[c]: sets[c].map(_percent) for c in names}).drop(columns=list(names))
    lines += [
        "## Published anchors per language set",
        "",
        "Each anchor's mean accuracy over the languages evaluated here and over xlspt's fixed language sets "
        "(`xlspt languages`), for results measured on them elsewhere (GPT-3.5: "
        f"{GPT35.description}).",
        "",
        markdown_table(shown_sets),
        "",
    ]
    lines += _each_language_beside_anchors(grid, languages)
    if len(held_out):
        held = pd.DataFrame({"language": held_out["language"],
                             **{anchor.name: held_out[anchor.column].map(_percent) for anchor in ANCHORS}})
        lines += [
            "## Published anchors on the held-out languages",
            "",
            "The anchors on the held-out languages (`--langs held-out`) that this store did not evaluate, for results "
            "measured on them elsewhere.",
            "",
            markdown_table(held),
            "",
        ]
    return lines
