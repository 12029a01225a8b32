"""The tables the study's figures draw (freezing pairs, sweeps, reparameterization changes, correlations with
pretraining share and distance), built from the grid and the findings' pairings."""

from __future__ import annotations

import math
import warnings

import pandas as pd
from scipy.stats import spearmanr

from ..data.languages import language_info
from ..errors import XlsptError
from .distance import distances_from
from .grid import FOLLOWS_FROM_FREEZE, Grid
from .findings import model_of, paired_changes, freeze_pairs, reparam_pairs, sweep_lines


def _seed_stats(grid: Grid, config_id: str) -> dict:
    configs = grid.configs
    return {"mean": configs.at[config_id, "transfer_mean"], "std": configs.at[config_id, "transfer_std"],
            "n_seeds": configs.at[config_id, "n_seeds"]}


def freeze_table(grid: Grid) -> pd.DataFrame:
    """Figure 2: per matched pair, mean transfer accuracy over seeds with and without MF."""
    rows = []
    for unfrozen, frozen in freeze_pairs(grid):
        rows.append({
            "model": model_of(grid, frozen),
            "setting": grid.label(frozen, leave_out=("model", "freeze", *FOLLOWS_FROM_FREEZE)),
            "frozen_id": frozen, "unfrozen_id": unfrozen,
            **{f"frozen_{k}": v for k, v in _seed_stats(grid, frozen).items()},
            **{f"unfrozen_{k}": v for k, v in _seed_stats(grid, unfrozen).items()},
        })
    return pd.DataFrame(rows)


def sweep_table(grid: Grid, field: str) -> pd.DataFrame:
    """Figures 3 and 4: mean transfer accuracy over seeds against ``field``, one line per group of
    configurations that agree on everything else (labelled without the model, which has its own
    panel); empty unless some line has two or more values."""
    if field not in grid.config_columns:
        return pd.DataFrame()
    lines = sweep_lines(grid, field)
    if not any(len(line) >= 2 for line in lines):
        return pd.DataFrame()
    rows = []
    for line in lines:
        first = next(iter(line.values()))
        model = model_of(grid, first)
        label = grid.label(first, leave_out=(field, "model")) or model
        for value, config_id in line.items():
            rows.append({"model": model, "line": label, "x": value, "config_id": config_id,
                         **_seed_stats(grid, config_id)})
    return pd.DataFrame(rows)


def reparam_table(grid: Grid) -> pd.DataFrame:
    """Figure 5: per model and transfer language, the relative change (%) of seed-averaged accuracy from
    reparameterization, averaged over the model's matched pairs (the numbers finding 3 counts)."""
    pairs = reparam_pairs(grid)
    frames = []
    models = list(dict.fromkeys(grid.configs["model_name"]))
    for model in models:
        model_pairs = [pair for pair in pairs if model_of(grid, pair[0]) == model]
        if model_pairs:
            change = paired_changes(grid, model_pairs, relative=True)
            frames.append(pd.DataFrame({"model": model, "language": change.index, "change_pct": change.to_numpy(),
                                        "n_pairs": len(model_pairs)}))
    columns = ["model", "language", "change_pct", "n_pairs"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def correlation_table(grid: Grid) -> pd.DataFrame:
    """Per configuration, Spearman correlation over transfer languages of accuracy with (a) the share of
    the model family's pretraining data (XGLM and BLOOM only) and (b) the typological distance from
    the training language. ``points`` holds the (language, x, accuracy) data for the figures."""
    rows = []
    for config_id in grid.configs.index:
        accuracy = grid.accuracy_by_language(config_id)
        family = grid.configs.at[config_id, "family"]
        against = {}
        if isinstance(family, str):  # XGLM or BLOOM: the families that published per-language shares
            shares = {lang: getattr(language_info(lang), f"{family}_share") for lang in accuracy.index}
            against[f"{family.upper()} pretraining share"] = {k: v for k, v in shares.items() if v is not None}
        try:
            against["typological distance"] = distances_from(grid.configs.at[config_id, "train_lang"], list(accuracy.index))
        except XlsptError as error:  # lang2vec missing: say so in the table rather than fail the report
            against["typological distance"] = error
        for name, values in against.items():
            row = {"config_id": config_id, "model": grid.configs.at[config_id, "model_name"],
                   "configuration": grid.configs.at[config_id, "label"], "against": name,
                   "n_languages": 0, "left_out": len(accuracy), "rho": math.nan, "p_value": math.nan, "points": []}
            if isinstance(values, Exception):
                row["against"] = f"{name} (unavailable: {values})"
            else:
                languages = [lang for lang in accuracy.index if lang in values]
                row["points"] = [(lang, values[lang], float(accuracy[lang])) for lang in languages]
                row["n_languages"], row["left_out"] = len(languages), len(accuracy) - len(languages)
                if len(languages) >= 3:
                    with warnings.catch_warnings():  # constant input: rho is NaN, which the table shows
                        warnings.simplefilter("ignore")
                        result = spearmanr([values[lang] for lang in languages], accuracy[languages].to_numpy())
                    row["rho"], row["p_value"] = float(result.statistic), float(result.pvalue)
            rows.append(row)
    columns = ["config_id", "model", "configuration", "against", "n_languages", "left_out", "rho", "p_value", "points"]
    return pd.DataFrame(rows, columns=columns)
