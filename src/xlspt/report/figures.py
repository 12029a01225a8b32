"""The study's figures, drawn with matplotlib's object-oriented API (no pyplot, so no global backend).

Each drawing function saves its PNG and returns the figure (tests read its data back). Each
figure is drawn only when the store holds the arms it compares; otherwise :func:`draw_all`
returns the reason, which the report prints in its place. Missing runs leave gaps: a line over
prompt lengths or shots is broken where a configuration is missing (never drawn through it),
and a pair of arms is drawn only when both exist. Accuracies are shown in %, error bars are the
standard deviation over seeds (none with a single seed).

Over 450 lines, on purpose: every figure of the report lives here, each a drawing function and the wrapper that
decides whether the store can draw it, so that matplotlib and the figures' shared style (colours, the chance line,
the resolution) stay in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from ..files import write_with_atomic
from ..data.anchors import SOURCE
from ..results.aggregate import CHANCE_SIB200
from .anchors import COMPARED, language_table, role
from .figure_data import freeze_table, reparam_table, sweep_table
from .findings import DISTANCE_STEP, distance_slope, freezing_distance_table
from .grid import Grid

MAX_PANELS = 12  # beyond this a figure of per-configuration panels becomes unreadable; the CSVs have all
DPI = 130
FROZEN_COLOR, UNFROZEN_COLOR = "#1f77b4", "#ff7f0e"
HELPED_COLOR, HURT_COLOR = "#2ca02c", "#d62728"


@dataclass
class DrawnFigure:
    """One figure of the report: where it was written, or why it was not drawn."""

    title: str
    path: Path | None = None
    caption: str = ""
    skipped: str = ""


def _save(figure: Figure, path: Path) -> None:
    # The temporary file's suffix is .tmp, so the format must be named. Every figure uses the constrained
    # layout, which already fits labels and legends inside the canvas (no bbox_inches="tight" pass).
    write_with_atomic(path, lambda tmp: figure.savefig(tmp, format="png", dpi=DPI))


def _chance_line(ax, vertical: bool = False) -> None:
    line = ax.axvline if vertical else ax.axhline
    line(100 * CHANCE_SIB200, color="grey", linestyle=":", linewidth=1, label=f"chance ({100 * CHANCE_SIB200:.1f}%)")


def _std_or_none(values: pd.Series) -> np.ndarray | None:
    """Error bar half-lengths in %, NaN (no bar, rather than a misleading zero-length one) where a
    configuration has a single seed; None when none has more."""
    values = pd.to_numeric(values, errors="coerce")
    return None if values.isna().all() else 100 * values.to_numpy(dtype=float)


# ----------------------------------------------------------------------------- figure 2


def freezing_bars(table: pd.DataFrame, path: Path) -> Figure:
    """Pairs of horizontal bars, one pair per matched setting: mean transfer accuracy with MF (model
    frozen) and without (model trained too). Horizontal, so that any number of settings stays legible."""
    n = len(table)
    figure = Figure(figsize=(8.5, 1.5 + 0.55 * n), layout="constrained")
    ax = figure.subplots()
    y = np.arange(n)[::-1]  # first pair at the top
    height = 0.38
    arms = [("frozen", "MF (model frozen)", FROZEN_COLOR, height / 2),
            ("unfrozen", "no MF (model trained too)", UNFROZEN_COLOR, -height / 2)]
    for arm, label, color, offset in arms:
        values = 100 * table[f"{arm}_mean"].astype(float).to_numpy()
        spread = _std_or_none(table[f"{arm}_std"])
        ax.barh(y + offset, values, height, xerr=spread, capsize=3, color=color, label=label)
        ends = values + (np.nan_to_num(spread) if spread is not None else 0)
        for value, end, position, seeds in zip(values, ends, y + offset, table[f"{arm}_n_seeds"]):
            ax.annotate(f"{value:.1f}% (n={int(seeds)})", (end, position), xytext=(3, 0),
                        textcoords="offset points", va="center", fontsize=7)
    labels = [f"{model}: {setting}" if setting else model for model, setting in zip(table["model"], table["setting"])]
    ax.set_yticks(y, labels, fontsize=8)
    _chance_line(ax, vertical=True)
    ax.set_xlabel("mean transfer accuracy (%), ± std over seeds; n = seeds")
    highest = np.nanmax(100 * table[["frozen_mean", "unfrozen_mean"]].astype(float).to_numpy())
    ax.set_xlim(0, min(100.0, 1.2 * highest + 5))  # room for the value labels
    ax.set_title("Figure 2: transfer accuracy with and without model freezing (MF)")
    figure.legend(*ax.get_legend_handles_labels(), fontsize=8, loc="outside lower center", ncols=3)
    ax.grid(axis="x", alpha=0.3)
    _save(figure, path)
    return figure


# ----------------------------------------------------------------------------- figures 3 and 4


def sweep_plot(table: pd.DataFrame, path: Path, xlabel: str, title: str) -> Figure:
    """Mean transfer accuracy ± std over seeds against a swept setting: a panel per model, a line per
    group of configurations that agree on every other setting (the same colour in every panel).

    Every line is laid on the union of the swept values with NaN where its configuration is
    missing: matplotlib breaks a line at NaN, so a missing run shows as a gap, not as a straight
    line through a point that does not exist.
    """
    values = sorted(table["x"].unique())
    models = list(dict.fromkeys(table["model"]))
    labels = list(dict.fromkeys(table["line"]))
    colors = _colors(len(labels))
    figure = Figure(figsize=(1.5 + 4.8 * len(models), 4.2 + 0.22 * math.ceil(len(labels) / 2)), layout="constrained")
    axes = figure.subplots(1, len(models), sharey=True, squeeze=False)[0]
    for ax, model in zip(axes, models):
        for label, rows in table[table["model"] == model].groupby("line", sort=False):
            rows = rows.set_index("x").reindex(values)
            ax.errorbar(values, 100 * rows["mean"].astype(float), yerr=_std_or_none(rows["std"]), marker="o",
                        capsize=3, color=colors[labels.index(label)], label=label)
        if all(v > 0 for v in values) and max(values) / min(values) >= 4:
            ax.set_xscale("log", base=2)  # shots and lengths grow by doubling
        ax.set_xticks(values, [str(v) for v in values])
        ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_title(model, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean transfer accuracy (%)")
    handles: dict = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    figure.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=min(2, len(handles)), fontsize=8)
    figure.suptitle(title)
    _save(figure, path)
    return figure


def _colors(n: int) -> list:
    """``n`` distinguishable colours: tab10, or tab20 beyond ten lines."""
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


# ----------------------------------------------------------------------------- figure 5


def reparam_bars(table: pd.DataFrame, path: Path) -> Figure:
    """A panel per model: each transfer language's relative change of accuracy from reparameterization
    (averaged over the model's matched pairs), sorted, green where it helps and red where it hurts."""
    models = list(dict.fromkeys(table["model"]))
    n_languages = table.groupby("model")["language"].nunique().max()
    figure = Figure(figsize=(max(8.5, 0.2 * n_languages + 2), 3.3 * len(models)), layout="constrained")
    axes = figure.subplots(len(models), 1, squeeze=False)[:, 0]
    for ax, model in zip(axes, models):
        rows = table[table["model"] == model].sort_values("change_pct", ascending=False)
        colors = [HELPED_COLOR if c > 0 else HURT_COLOR for c in rows["change_pct"]]
        ax.bar(rows["language"], rows["change_pct"], color=colors)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.tick_params(axis="x", labelrotation=90, labelsize=7)
        ax.set_ylabel("change in accuracy (%)")
        helped, hurt = int((rows["change_pct"] > 0).sum()), int((rows["change_pct"] < 0).sum())
        pairs = int(rows["n_pairs"].iloc[0])
        ax.set_title(f"{model}: helps {helped}, hurts {hurt} of {len(rows)} transfer languages "
                     f"(mean over {pairs} matched pair{'s' if pairs != 1 else ''})", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    figure.suptitle("Figure 5: per-language change of accuracy from prompt reparameterization (relative, %)")
    _save(figure, path)
    return figure


# ----------------------------------------------------------------------------- correlations


def correlation_panels(rows: pd.DataFrame, path: Path, xlabel: str, title: str, log_x: bool, x_scale: float) -> Figure:
    """One scatter panel per configuration: language accuracy against ``x`` with Spearman's rho in the title.

    At most :data:`MAX_PANELS` panels, taken from the models in turn, so that every model shows.
    """
    rows = _panels_across_models(rows)
    columns = min(3, len(rows))
    lines = math.ceil(len(rows) / columns)
    figure = Figure(figsize=(4.6 * columns, 3.9 * lines), layout="constrained")
    axes = figure.subplots(lines, columns, squeeze=False).ravel()
    for ax, row in zip(axes, rows.itertuples(index=False)):
        languages = [p[0] for p in row.points]
        x = np.array([p[1] for p in row.points], dtype=float) * x_scale
        y = 100 * np.array([p[2] for p in row.points], dtype=float)
        ax.scatter(x, y, s=14)
        for language, xi, yi in zip(languages, x, y):
            ax.annotate(language.split("_")[0], (xi, yi), xytext=(2, 2), textcoords="offset points", fontsize=6)
        if log_x:
            ax.set_xscale("log")
        rho = "–" if pd.isna(row.rho) else f"{row.rho:+.2f}"
        p = "–" if pd.isna(row.p_value) else f"{row.p_value:.2g}"
        ax.set_title(f"{row.config_id}: {row.configuration}\nSpearman ρ = {rho}, p = {p} (n = {row.n_languages})", fontsize=8)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("accuracy (%)", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes[len(rows):]:
        ax.set_visible(False)
    figure.suptitle(title)
    _save(figure, path)
    return figure


def _panels_across_models(rows: pd.DataFrame) -> pd.DataFrame:
    """The first :data:`MAX_PANELS` rows, taking each model's next configuration in turn."""
    turn = rows.groupby("model", sort=False).cumcount()
    return rows.assign(turn=turn.to_numpy()).sort_values("turn", kind="stable").head(MAX_PANELS)


# ----------------------------------------------------------------------------- costs


def parameters_scatter(configs: pd.DataFrame, path: Path) -> Figure:
    """Trainable parameters (log x) against mean transfer accuracy ± std over seeds, each point labelled
    with its configuration id (the report's table gives its stored bytes)."""
    figure = Figure(figsize=(8, 5), layout="constrained")
    ax = figure.subplots()
    for model, rows in configs.groupby("model_name", sort=False):
        ax.errorbar(rows["trainable_parameters"].astype(float), 100 * rows["transfer_mean"].astype(float),
                    yerr=_std_or_none(rows["transfer_std"]), fmt="o", capsize=3, label=model)
        for config_id, row in rows.iterrows():
            ax.annotate(config_id, (row["trainable_parameters"], 100 * row["transfer_mean"]),
                        xytext=(4, 2), textcoords="offset points", fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log scale)")
    ax.set_ylabel("mean transfer accuracy (%)")
    ax.set_title("Trainable parameters against transfer accuracy, per configuration")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(figure, path)
    return figure


# ----------------------------------------------------------------------------- freezing and distance


def _fitted_line(ax, distance: pd.Series, values: pd.Series, color: str, label: str) -> None:
    """Scatter of ``values`` against distance with its least-squares line, the slope in the label."""
    slope, low, high = distance_slope(distance, values)
    ax.scatter(distance, values, s=14, color=color, alpha=0.75)
    xs = np.linspace(distance.min(), distance.max(), 2)
    intercept = values.mean() - slope * distance.mean() / DISTANCE_STEP
    ax.plot(xs, intercept + slope * xs / DISTANCE_STEP, color=color,
            label=f"{label}: {slope:+.1f} [{low:+.1f}, {high:+.1f}] points per {DISTANCE_STEP}")


def distance_axes(*axes) -> None:
    """Axes whose x is each language's typological distance from the training language: labelled, legend, grid."""
    for ax in axes:
        ax.set_xlabel("typological distance from the training language (URIEL, cosine)")
        ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3)


def freezing_distance_plot(table: pd.DataFrame, path: Path) -> Figure:
    """Per model, two panels against each transfer language's typological distance from the training
    language: the gain from freezing (points), and accuracy with and without MF; least-squares lines
    with their slopes and 95% intervals in the legends."""
    models = list(dict.fromkeys(table["model"]))
    figure = Figure(figsize=(11, 0.6 + 4.4 * len(models)), layout="constrained")
    axes = figure.subplots(len(models), 2, squeeze=False)
    for (gain_ax, accuracy_ax), model in zip(axes, models):
        rows = table[table["model"] == model]
        _fitted_line(gain_ax, rows["distance"], rows["gain"], HELPED_COLOR, "gain")
        for _, row in rows.iterrows():
            gain_ax.annotate(row["language"].split("_")[0], (row["distance"], row["gain"]), xytext=(2, 2),
                             textcoords="offset points", fontsize=5, alpha=0.7)
        gain_ax.axhline(0, color="grey", linewidth=1)
        gain_ax.set_ylabel("gain from freezing (points, MF - no MF)")
        gain_ax.set_title(f"{model}: gain from freezing", fontsize=10)
        _fitted_line(accuracy_ax, rows["distance"], rows["frozen"], FROZEN_COLOR, "MF (model frozen)")
        _fitted_line(accuracy_ax, rows["distance"], rows["unfrozen"], UNFROZEN_COLOR, "no MF (model trained too)")
        _chance_line(accuracy_ax)
        accuracy_ax.set_ylabel("accuracy (%)")
        accuracy_ax.set_title(f"{model}: accuracy with and without MF", fontsize=10)
        distance_axes(gain_ax, accuracy_ax)
    figure.suptitle("Model freezing and typological distance (one point per transfer language, seed-averaged)")
    _save(figure, path)
    return figure


# ----------------------------------------------------------------------------- published anchors


ANCHOR_STYLES = {"gpt4_zero_shot": ("^", "#555555"), "xlmr_zero_shot_from_eng": ("s", "black")}


def anchors_plot(table: pd.DataFrame, shown: dict[str, list[tuple[str, str]]], path: Path) -> Figure:
    """A panel per model: each language's seed-averaged accuracy (± std over seeds) of the ``shown`` configurations
    (model -> [(config id, legend label)]) beside the compared anchors' accuracy on it, languages sorted by
    XLM-R's accuracy."""
    table = table.sort_values(COMPARED[1].column, ascending=False, kind="stable").reset_index(drop=True)
    x = np.arange(len(table))
    colors = _colors(max(len(configs) for configs in shown.values()))
    figure = Figure(figsize=(max(8.5, 0.24 * len(table) + 2), 1.4 + 3.9 * len(shown)), layout="constrained")
    axes = figure.subplots(len(shown), 1, squeeze=False)[:, 0]
    for ax, (model, configs) in zip(axes, shown.items()):
        for anchor in COMPARED:
            marker, color = ANCHOR_STYLES.get(anchor.column, ("D", "grey"))
            ax.plot(x, 100 * table[anchor.column].astype(float), marker=marker, linestyle="none", color=color,
                    markersize=5, label=anchor.description)
        for index, (config_id, label) in enumerate(configs):
            ax.errorbar(x, 100 * table[config_id].astype(float), yerr=_std_or_none(table[f"{config_id}_std"]), fmt="o",
                        capsize=2, markersize=4, color=colors[index], label=label)
        _chance_line(ax)
        ax.set_xticks(x, list(table["language"]), rotation=90, fontsize=7)
        ax.set_xlim(-0.7, len(table) - 0.3)
        ax.set_ylim(0, 100)
        ax.set_ylabel("accuracy (%)")
        ax.set_title(model, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    handles: dict = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    figure.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=2, fontsize=8)
    figure.suptitle(f"Each language beside the published anchors ({SOURCE})")
    _save(figure, path)
    return figure


def _anchors_figure(grid: Grid, out: Path) -> DrawnFigure:
    table = language_table(grid)
    configs = [c for c in table.columns if c in grid.configs.index]
    shown: dict[str, list[tuple[str, str]]] = {}
    for config_id in configs:
        label = f"{config_id}: {grid.configs.at[config_id, 'label']} ({role(grid, config_id)})"
        shown.setdefault(grid.configs.at[config_id, "model_name"], []).append((config_id, label))
    return _attempt(
        out, "Each language beside the published anchors", "anchors.png",
        None if configs else f"none of the languages evaluated here is in the {SOURCE}.",
        lambda path: anchors_plot(table, shown, path),
        "Per language (sorted by XLM-R's accuracy), the seed-averaged accuracy (error bars: std over seeds) of the "
        "configurations in the legend (per model: xlspt's defaults, when the store has them, and the one with the highest "
        "mean), beside GPT-4 prompted in English and XLM-R fine-tuned on English and tested zero-shot, on the same test "
        "sentences (the section *Each language beside the published anchors* has the numbers).",
    )


# ----------------------------------------------------------------------------- all of them


def draw_all(grid: Grid, correlations: pd.DataFrame, out: Path) -> list[DrawnFigure]:
    """Draw every figure the grid has the arms for into ``out``; the others come back with the reason."""
    out = Path(out)
    return [
        _freezing_figure(grid, out),
        _sweep_figure(grid, out, 3, "shots", "training examples per class"),
        _sweep_figure(grid, out, 4, "prompt_length", "prompt length (vectors)"),
        _reparam_figure(grid, out),
        _share_figure(correlations, out),
        _distance_figure(correlations, out),
        _freezing_distance_figure(grid, out),
        _parameters_figure(grid, out),
        _anchors_figure(grid, out),
    ]


def _attempt(out: Path, title: str, filename: str, skipped: str | None, draw: Callable[[Path], Figure],
             caption: str) -> DrawnFigure:
    """Draw the figure into ``out / filename``, unless ``skipped`` gives the reason it cannot be."""
    if skipped is not None:
        return DrawnFigure(title=title, skipped=skipped)
    draw(out / filename)
    return DrawnFigure(title=title, path=out / filename, caption=caption)


def _freezing_figure(grid: Grid, out: Path) -> DrawnFigure:
    freezing = freeze_table(grid)
    return _attempt(
        out, "Figure 2: transfer with and without model freezing", "fig2_freezing.png",
        None if len(freezing) else "the store has no frozen and unfrozen (no MF) configurations that agree on every other setting.",
        lambda path: freezing_bars(freezing, path),
        "Mean accuracy over the transfer languages, averaged over seeds (error bars: std over seeds), for each "
        "pair of configurations that differ only in model freezing.",
    )


def _sweep_figure(grid: Grid, out: Path, number: int, field: str, xlabel: str) -> DrawnFigure:
    table = sweep_table(grid, field)
    return _attempt(
        out, f"Figure {number}: transfer against {xlabel}", f"fig{number}_{field}.png",
        None if len(table) else f"no two configurations differ only in {field}.",
        lambda path: sweep_plot(table, path, xlabel, f"Figure {number}: transfer accuracy against {xlabel}"),
        "Mean accuracy over the transfer languages, mean ± std over seeds; one line per group of configurations "
        "that agree on every other setting. A missing configuration leaves a gap in its line.",
    )


def _reparam_figure(grid: Grid, out: Path) -> DrawnFigure:
    changes = reparam_table(grid)
    return _attempt(
        out, "Figure 5: per-language change from reparameterization", "fig5_reparameterization.png",
        None if len(changes) else "no configurations with and without reparameterization that agree on every other setting.",
        lambda path: reparam_bars(changes, path),
        "Relative change (%) of each transfer language's seed-averaged accuracy when the prompt is reparameterized, "
        "averaged over each model's pairs of otherwise identical configurations (the numbers the reparameterization "
        "finding counts), sorted.",
    )


def _panels_note(rows: pd.DataFrame) -> str:
    """The caption's note when a figure shows only the first :data:`MAX_PANELS` configurations."""
    if len(rows) <= MAX_PANELS:
        return ""
    return (f" {MAX_PANELS} of {len(rows)} configurations are shown (each model's first ones in turn); "
            "the table below has all.")


def _share_figure(correlations: pd.DataFrame, out: Path) -> DrawnFigure:
    rows = correlations[correlations["against"].str.contains("pretraining share") & (correlations["n_languages"] > 0)]
    return _attempt(
        out, "Accuracy against the language's share of pretraining data", "share_correlation.png",
        None if len(rows) else "no XGLM or BLOOM configuration (only they published per-language pretraining shares).",
        lambda path: correlation_panels(rows, path, "share of the model's pretraining data (%, log scale)",
                                        "Transfer accuracy against pretraining share", log_x=True, x_scale=100),
        "One panel per configuration: seed-averaged accuracy of each transfer language in the model family's "
        "pretraining against its share of that data." + _panels_note(rows),
    )


def _distance_figure(correlations: pd.DataFrame, out: Path) -> DrawnFigure:
    rows = correlations[(correlations["against"] == "typological distance") & (correlations["n_languages"] > 0)]
    left_out = int(rows["left_out"].max()) if len(rows) else 0
    return _attempt(
        out, "Accuracy against typological distance from the training language", "distance_correlation.png",
        None if len(rows) else "no typological distances (lang2vec missing, or it knows none of the languages).",
        lambda path: correlation_panels(rows, path, "typological distance from the training language (URIEL, cosine)",
                                        "Transfer accuracy against typological distance", log_x=False, x_scale=1),
        "One panel per configuration: seed-averaged accuracy of each transfer language against the cosine distance of "
        "its URIEL syntax + phonology + inventory vector from the training language's."
        + (f" {left_out} languages unknown to URIEL are left out." if left_out else "")
        + _panels_note(rows),
    )


def _freezing_distance_figure(grid: Grid, out: Path) -> DrawnFigure:
    table = freezing_distance_table(grid)
    enough = table.groupby("model")["distance"].nunique() >= 3 if len(table) else pd.Series(dtype=bool)
    table = table[table["model"].isin(enough[enough].index)]  # a line needs 3 distinct distances per model
    return _attempt(
        out, "Model freezing against typological distance", "freezing_distance.png",
        None if len(table) else "not enough runs: no frozen and unfrozen configurations that agree on every other "
                                     "setting, with 3 or more transfer languages of known distance.",
        lambda path: freezing_distance_plot(table, path),
        "Left: each transfer language's gain from freezing the model (seed-averaged accuracy with MF minus without, "
        "averaged over the matched pairs) against its typological distance from the training language. Right: its "
        "accuracy with and without MF. Lines: least squares, slopes with 95% intervals (the distance finding).",
    )


def _parameters_figure(grid: Grid, out: Path) -> DrawnFigure:
    costed = grid.configs[grid.configs["trainable_parameters"].notna() & grid.configs["transfer_mean"].notna()]
    costed = costed[costed["trainable_parameters"].astype(float) > 0]
    return _attempt(
        out, "Trainable parameters against transfer accuracy", "parameters.png",
        None if len(costed) else "no record states its trainable parameters.",
        lambda path: parameters_scatter(costed, path),
        "Each configuration's trainable parameters (log scale) against its mean transfer accuracy (± std over seeds), "
        "labelled with its id (the table below gives the bytes stored to reuse it).",
    )
