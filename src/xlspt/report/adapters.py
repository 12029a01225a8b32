"""How much of the model must move: soft prompts with low-rank adapters, set against the frozen and whole-model runs.

Three arms of the same setting (every config field but the method and what follows from freezing): **MF**, the
prompt alone on the frozen model; **LoRA**, the prompt with low-rank adapters on the frozen model (method lora);
**no MF**, the prompt with every weight of the model. The arms move, in that order, none, a few and all of the
model's numbers: "does less move transfer more?" is the study's first finding asked one level further.

As in :mod:`~xlspt.report.findings`, languages are the units: transfer languages only, accuracy averaged over
seeds, then over the matched settings. Three tests:

1. *Adapters transfer better than a frozen model*: Wilcoxon signed-rank over languages of LoRA - MF.
2. *Adapters transfer better than training the whole model*: Wilcoxon of LoRA - no MF.
3. *Distant languages gain most from adapters over the whole model*: Spearman's rho between LoRA - no MF and the
   language's typological distance from the training language, one-sided, with each arm's slope of accuracy
   against distance (95% intervals).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property

import pandas as pd
from matplotlib.figure import Figure
from scipy.stats import spearmanr

from ..study.config import LORA_FIELDS
from ..study.records import RunRecord
from .distance import distances_from
from .figures import _chance_line, _fitted_line, _save, distance_axes
from .findings import (CONTRADICTED, DISTANCE_STEP, NOT_ENOUGH_RUNS, _row, _verdict, _wilcoxon_both_ways,
                       distance_slope)
from .grid import FOLLOWS_FROM_FREEZE, Grid, build_grid, config_value
from .anchors import comparison_table
from .sections import _effect, _p_value, anchor_comparison, markdown_table

ARMS = ("frozen", "lora", "whole")
ARM_NAMES = {"frozen": "MF (prompt only)", "lora": "LoRA (prompt + adapters, model frozen)",
             "whole": "no MF (prompt + whole model)"}

ADAPTERS_VS_FROZEN = "low-rank adapters transfer better than a frozen model"
ADAPTERS_VS_WHOLE = "low-rank adapters transfer better than training the whole model"
ADAPTERS_DISTANCE = "distant languages gain most from adapters over the whole model"

#: Fields that tell the arms apart, or follow from that.
_ARM_FIELDS = ("method", "freeze", *FOLLOWS_FROM_FREEZE, *LORA_FIELDS)


@dataclass
class AdapterArms:
    """The runs of the three arms: their grid, and each matched setting's configuration ids (arm -> id)."""

    grid: Grid
    settings: list[dict[str, str]]

    @property
    def complete(self) -> bool:
        return bool(self.settings)

    @cached_property
    def language_table(self) -> pd.DataFrame:
        """:func:`adapter_language_table`, computed once (the findings and ``adapters.csv`` read the same table)."""
        return adapter_language_table(self)


def adapter_arms(records: list[RunRecord]) -> AdapterArms | None:
    """The matched frozen, LoRA and whole-model configurations among ``records`` (zero-shot single prompts), or
    ``None`` where no run is of method lora."""
    chosen = [r for r in records if r.protocol == "zero-shot" and config_value(r, "ensemble") == 1
              and config_value(r, "method") in ("prompt", "lora")]
    if not any(config_value(r, "method") == "lora" for r in chosen):
        return None
    grid = build_grid(chosen)
    columns = [c for c in grid.config_columns if c not in _ARM_FIELDS]
    groups: dict[str, dict[str, list[str]]] = {}
    for config_id in grid.configs.index:
        config = grid.configs.loc[config_id]
        arm = "lora" if config.get("method") == "lora" else ("frozen" if config["freeze"] else "whole")
        key = json.dumps([grid.configs.at[config_id, c] for c in columns], default=str)
        groups.setdefault(key, {}).setdefault(arm, []).append(config_id)
    settings = [{"frozen": f, "lora": lo, "whole": w} for arms in groups.values() if all(a in arms for a in ARMS)
                for f in arms["frozen"] for lo in arms["lora"] for w in arms["whole"]]
    return AdapterArms(grid, settings)


def _arm_of(arms: AdapterArms, config_id: str) -> str:
    return next(arm for setting in arms.settings for arm, cid in setting.items() if cid == config_id)


def adapter_language_table(arms: AdapterArms) -> pd.DataFrame:
    """Per transfer language: its typological ``distance`` from the training language (NaN where URIEL does not
    know it) and each arm's seed-averaged accuracy (%), averaged over the matched settings."""
    columns = ["language", "distance", *ARMS]
    frames = []
    for setting in arms.settings:
        by_arm = {arm: arms.grid.accuracy_by_language(config_id) for arm, config_id in setting.items()}
        languages = list(by_arm["frozen"].index.intersection(by_arm["lora"].index).intersection(by_arm["whole"].index))
        frames.append(pd.DataFrame({"language": languages, **{arm: 100 * by_arm[arm][languages].to_numpy(dtype=float)
                                                                for arm in ARMS}}))
    if not frames:
        return pd.DataFrame(columns=columns)
    table = pd.concat(frames).groupby("language", sort=False).mean().reset_index()
    train_lang = arms.grid.configs.at[arms.settings[0]["frozen"], "train_lang"]
    distances = distances_from(train_lang, list(table["language"]))
    table["distance"] = table["language"].map(distances)
    return table[columns]


def adapter_findings(arms: AdapterArms | None) -> list[dict]:
    """The three tests' rows (:data:`~xlspt.report.findings.COLUMNS`); none without LoRA runs."""
    if arms is None:
        return []
    model = ", ".join(dict.fromkeys(arms.grid.configs["model_name"]))
    if not arms.complete:
        detail = "no LoRA configuration with frozen and whole-model runs that agree on every other setting"
        return [_row(name, model, verdict=NOT_ENOUGH_RUNS, detail=detail)
                for name in (ADAPTERS_VS_FROZEN, ADAPTERS_VS_WHOLE, ADAPTERS_DISTANCE)]
    table = arms.language_table
    rows = [_paired_row(ADAPTERS_VS_FROZEN, model, table["lora"] - table["frozen"], len(arms.settings), "LoRA - MF"),
            _paired_row(ADAPTERS_VS_WHOLE, model, table["lora"] - table["whole"], len(arms.settings), "LoRA - no MF")]
    known = table.dropna(subset=["distance"])
    if len(known) < 3:
        rows.append(_row(ADAPTERS_DISTANCE, model, verdict=NOT_ENOUGH_RUNS, n_languages=len(known),
                         detail="fewer than 3 transfer languages with a known distance"))
        return rows
    gain = known["lora"] - known["whole"]
    rho = spearmanr(known["distance"], gain, alternative="greater")
    p_opposite = float(spearmanr(known["distance"], gain, alternative="less").pvalue)
    slopes = {arm: distance_slope(known["distance"], known[arm]) for arm in ARMS}
    shown = "; ".join(f"{ARM_NAMES[arm].split(' (')[0]} {s[0]:+.1f} [{s[1]:+.1f}, {s[2]:+.1f}]" for arm, s in slopes.items())
    rows.append(_row(
        ADAPTERS_DISTANCE, model, verdict=_verdict(float(rho.pvalue), p_opposite), effect=float(rho.statistic),
        effect_unit="Spearman's rho (LoRA - no MF vs distance)", n_languages=len(known), n_comparisons=len(arms.settings),
        test="Spearman's rank correlation over languages", p_value=float(rho.pvalue), p_value_opposite=p_opposite,
        detail=f"accuracy per {DISTANCE_STEP} of distance: {shown} points (95% intervals)"))
    return rows


def _paired_row(finding: str, model: str, differences: pd.Series, settings: int, unit: str) -> dict:
    if len(differences) < 2:
        return _row(finding, model, verdict=NOT_ENOUGH_RUNS, n_languages=len(differences),
                    detail="fewer than 2 transfer languages in every arm")
    p_greater, p_less = _wilcoxon_both_ways(differences)
    verdict = _verdict(p_greater, p_less)
    return _row(finding, model, verdict=verdict, effect=float(differences.mean()), effect_unit=f"points ({unit})",
                n_languages=len(differences), n_comparisons=settings, test="Wilcoxon signed-rank over languages",
                p_value=p_greater, p_value_opposite=p_less,
                detail=(f"LoRA better on {int((differences > 0).sum())} of {len(differences)} languages"
                        + ("; the other arm is ahead" if verdict == CONTRADICTED else "")))


def adapter_cost_table(arms: AdapterArms, records: list[RunRecord]) -> pd.DataFrame:
    """Per matched setting and arm: mean transfer accuracy (%) and its spread over seeds, the numbers that train
    and that are stored per task, bytes stored per task, and the mean seconds of training and of evaluation."""
    timings = {r.run_id: r.timings or {} for r in records}
    grid, rows = arms.grid, []
    for setting in arms.settings:
        label = grid.label(setting["lora"], leave_out=_ARM_FIELDS + ("model",))
        for arm in ARMS:
            config_id = setting[arm]
            runs = grid.runs[grid.runs["config_id"] == config_id]
            seconds = pd.DataFrame([timings.get(run_id, {}) for run_id in runs["run_id"]])
            rows.append({
                "setting": label, "arm": ARM_NAMES[arm], "config_id": config_id,
                "transfer_mean": 100 * grid.configs.at[config_id, "transfer_mean"],
                "transfer_std": 100 * grid.configs.at[config_id, "transfer_std"],
                "seeds": int(grid.configs.at[config_id, "n_seeds"]),
                "trainable_parameters": int(grid.configs.at[config_id, "trainable_parameters"]),
                "stored_bytes": int(grid.configs.at[config_id, "stored_bytes"]),
                "train_seconds": float(seconds["train"].mean()) if "train" in seconds else None,
                "evaluate_seconds": float(seconds["evaluate"].mean()) if "evaluate" in seconds else None,
            })
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- figure and report section

ARM_COLORS = {"frozen": "#1f77b4", "lora": "#2ca02c", "whole": "#ff7f0e"}


def adapters_plot(table: pd.DataFrame, path) -> Figure:
    """Against each transfer language's typological distance from the training language: LoRA's gain over the
    whole-model arm (left) and each arm's accuracy (right), least-squares lines with their slopes and 95% intervals."""
    known = table.dropna(subset=["distance"])
    figure = Figure(figsize=(11, 4.8), layout="constrained")
    gain_ax, accuracy_ax = figure.subplots(1, 2)
    _fitted_line(gain_ax, known["distance"], known["lora"] - known["whole"], ARM_COLORS["lora"], "LoRA - no MF")
    gain_ax.axhline(0, color="grey", linewidth=1)
    gain_ax.set_ylabel("LoRA - no MF (points)")
    gain_ax.set_title("gain from adapters over training the whole model", fontsize=10)
    for arm in ARMS:
        _fitted_line(accuracy_ax, known["distance"], known[arm], ARM_COLORS[arm], ARM_NAMES[arm])
    _chance_line(accuracy_ax)
    accuracy_ax.set_ylabel("accuracy (%)")
    accuracy_ax.set_title("accuracy of each arm", fontsize=10)
    distance_axes(gain_ax, accuracy_ax)
    figure.suptitle("How much of the model must move (one point per transfer language, seed-averaged)")
    _save(figure, path)
    return figure


def adapters_section(arms: AdapterArms | None, costs: pd.DataFrame | None, findings: list[dict],
                     figure: str | None, records: list[RunRecord] = ()) -> list[str]:
    """The report's two sections on the lora arm, the verdicts then cost beside quality (none without LoRA runs)."""
    if arms is None:
        return []
    lines = ["## How much of the model must move: low-rank adapters", "",
             "The study's first question one level further: the same prompt trained on the frozen model (MF), with "
             "low-rank adapters on the frozen model (LoRA: PEFT's, one set per run), and with the whole model (no MF), "
             "in settings that agree on everything else. Languages are the units, as in the findings above (transfer "
             "languages, accuracy averaged over seeds, then over the matched settings); verdicts as there.", ""]
    rows = pd.DataFrame(findings)
    if len(rows):
        lines += ["| question | verdict | effect | languages | p | p (opposite) | detail |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r.finding} | {r.verdict} | {_effect(r.effect, r.effect_unit or '')} | {r.n_languages} | "
                  f"{_p_value(r.p_value)} | {_p_value(r.p_value_opposite)} | {r.detail} |" for r in rows.itertuples()]
        lines.append("")
    if figure:
        lines += [f"![How much of the model must move]({figure})", "",
                  "Left: each transfer language's gain from adapters over training the whole model, against its "
                  "typological distance from the training language. Right: each arm's accuracy. Lines: least squares, "
                  "slopes with 95% intervals.", ""]
    if costs is not None and len(costs):
        shown = pd.DataFrame({
            "setting": costs["setting"], "arm": costs["arm"],
            "transfer accuracy": [f"{m:.1f}% ± {s:.1f}" for m, s in zip(costs["transfer_mean"], costs["transfer_std"])],
            "seeds": costs["seeds"], "trained numbers": costs["trainable_parameters"].map("{:,}".format),
            "stored bytes per task": costs["stored_bytes"].map("{:,}".format),
            "train (s)": costs["train_seconds"].map(lambda v: f"{v:.0f}" if pd.notna(v) else "–"),
            "evaluate (s)": costs["evaluate_seconds"].map(lambda v: f"{v:.0f}" if pd.notna(v) else "–"),
        })
        compared = comparison_table(arms.grid, list(records))
        if len(compared):
            compared = compared[compared["config_id"].isin([s[arm] for s in arms.settings for arm in ARMS])].assign(
                configuration=lambda t: [arms.grid.label(c, leave_out=_ARM_FIELDS + ("model",)) for c in t["config_id"]])
            shown_anchors = anchor_comparison(compared).drop(columns="id")
            shown_anchors.insert(0, "arm", [ARM_NAMES[_arm_of(arms, c)] for c in compared["config_id"]])
            lines += ["## Low-rank adapters beside the published anchors", "",
                      "Each arm's mean accuracy over the languages it was evaluated on (the 52, English included; ± "
                      "std over seeds) beside the published anchors on the same languages, as in Against published "
                      "anchors.", "", markdown_table(shown_anchors), ""]
        lines += ["## Low-rank adapters: cost beside quality", "",
                  "Mean transfer accuracy over seeds (± their spread), the numbers that trained and the bytes a user "
                  "keeps per task, and the mean seconds a run spent training and evaluating. No MF needs a copy of the "
                  "model's weights per task, which these runs did not save (their stored bytes are the prompt's); MF and "
                  "LoRA tasks share one base model.", "", markdown_table(shown), ""]
    return lines
