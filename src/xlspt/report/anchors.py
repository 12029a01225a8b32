"""A store's results beside the published anchors (:mod:`xlspt.data.anchors`: the SIB-200 paper's Table 8).

Every comparison is over the same languages on both sides: a configuration's languages that the anchors'
table has. A configuration's accuracy is, as everywhere in the report, each run's mean over those languages,
then the mean (± std) over seeds; per language, the seed-averaged accuracy. The per-language tables and the
figure show, per model, two configurations: xlspt's defaults (when the store has them) and the one with the
highest mean.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from ..data.anchors import ANCHORS, Anchor, anchor_accuracy, anchor_mean, anchor_table
from ..data.languages import DEVELOPMENT_SET, HELD_OUT_SET, STUDY_SET, language_sets
from ..study.config import RunConfig
from ..study.records import RunRecord
from .grid import Grid

#: The anchors the per-configuration comparison and the figure show (GPT-3.5 is in the per-language tables).
COMPARED: tuple[Anchor, ...] = ANCHORS[:2]
SET_NAMES = {
    STUDY_SET: "the study's 52 (`--langs 52`)",
    DEVELOPMENT_SET: "the development languages (`--langs dev`)",
    HELD_OUT_SET: "the held-out languages (`--langs held-out`)",
}


def _anchored(grid: Grid) -> pd.DataFrame:
    """``grid.by_language`` without the languages the anchors' table lacks."""
    return grid.by_language[grid.by_language["language"].isin(anchor_table())]


def with_anchors(languages: pd.DataFrame) -> pd.DataFrame:
    """A table with a ``language`` column, with each anchor's accuracy on that language beside it (NaN where unknown)."""
    out = languages.copy()
    for anchor in ANCHORS:
        out[anchor.column] = [anchor_accuracy(anchor, code) for code in out["language"]]
    return out


def _default_fields(grid: Grid) -> dict:
    """xlspt's default value of each varying setting a label shows (the model and language list aside)."""
    defaults = {f.name: f.default for f in dataclasses.fields(RunConfig) if f.default is not dataclasses.MISSING}
    return {name: getattr(defaults[name], "value", defaults[name])
            for name in grid.label_fields if name in defaults and name not in ("model", "langs")}


def _is_default(grid: Grid, config_id: str) -> bool:
    values = grid.configs.loc[config_id]
    return all(values[name] == default or (not values[name] and not default)
               for name, default in _default_fields(grid).items())


def shown_configurations(grid: Grid) -> list[str]:
    """Per model: xlspt's defaults (when the store has them), then the configuration with the highest mean over
    the anchored languages."""
    means = _anchored(grid).groupby("config_id", sort=False)["accuracy"].mean()
    shown: list[str] = []
    for _, configs in grid.configs.groupby("model_name", sort=False):
        candidates = [c for c in configs.index if c in means.index]
        if not candidates:
            continue
        defaults = [c for c in candidates if _is_default(grid, c)]
        best = max(candidates, key=lambda c: means[c])
        shown += [*defaults[:1], best]
    return list(dict.fromkeys(shown))


def role(grid: Grid, config_id: str) -> str:
    """``xlspt's defaults``, ``the highest mean`` or both, for a shown configuration."""
    means = _anchored(grid).groupby("config_id", sort=False)["accuracy"].mean()
    model = grid.configs.at[config_id, "model_name"]
    same_model = [c for c in grid.configs.index if grid.configs.at[c, "model_name"] == model and c in means.index]
    roles = (["xlspt's defaults"] if _is_default(grid, config_id) else []) \
        + (["the highest mean"] if config_id == max(same_model, key=lambda c: means[c]) else [])
    return " and ".join(roles)


def comparison_table(grid: Grid, records: list[RunRecord]) -> pd.DataFrame:
    """Per configuration: its mean accuracy over its anchored languages (mean and std over seeds), each compared
    anchor's mean over the same languages, the difference (configuration minus anchor) and on how many of those
    languages the configuration's seed-averaged accuracy is above the anchor's."""
    config_of = dict(zip(grid.runs["run_id"], grid.runs["config_id"]))
    known = anchor_table()
    run_means = []
    for record in records:
        values = [r["accuracy"] for r in record.results if r["language"] in known]
        if record.run_id in config_of and values:
            run_means.append({"config_id": config_of[record.run_id], "accuracy": sum(values) / len(values)})
    by_run = pd.DataFrame(run_means, columns=["config_id", "accuracy"]).groupby("config_id", sort=False)["accuracy"]
    means, spreads = by_run.mean(), by_run.std(ddof=1)  # no spread (NaN) with one seed
    anchored = _anchored(grid)
    rows = []
    for config_id in grid.configs.index:
        languages = anchored[anchored["config_id"] == config_id]
        if languages.empty:
            continue
        row = {"config_id": config_id, "configuration": grid.configs.at[config_id, "label"],
               "n_seeds": grid.configs.at[config_id, "n_seeds"], "languages": len(languages),
               "english_mean": grid.configs.at[config_id, "english_mean"], "english_std": grid.configs.at[config_id, "english_std"],
               "accuracy_mean": means[config_id], "accuracy_std": spreads[config_id]}
        for anchor in ANCHORS:
            mean, _ = anchor_mean(anchor, languages["language"])
            anchor_values = languages["language"].map(lambda code: anchor_accuracy(anchor, code))
            row[anchor.column] = mean
            row[f"{anchor.column}_difference"] = row["accuracy_mean"] - mean
            row[f"{anchor.column}_above"] = int((languages["accuracy"].to_numpy() > anchor_values.to_numpy()).sum())
        rows.append(row)
    return pd.DataFrame(rows)


def language_set_table(grid: Grid) -> pd.DataFrame:
    """Each anchor's mean over the languages evaluated here, the transfer languages among them, xlspt's fixed
    language sets and every language of the anchors' table."""
    evaluated = list(dict.fromkeys(_anchored(grid)["language"]))
    training = set(grid.configs["train_lang"])
    sets = {"evaluated here": evaluated, "the transfer languages evaluated here": [c for c in evaluated if c not in training]}
    sets.update({SET_NAMES[name]: list(codes) for name, codes in language_sets().items() if name in SET_NAMES})
    sets["every language of the paper's table"] = list(anchor_table())
    rows = []
    for name, codes in sets.items():
        row = {"language set": name, "languages": anchor_mean(ANCHORS[0], codes)[1]}
        row.update({anchor.column: anchor_mean(anchor, codes)[0] for anchor in ANCHORS})
        rows.append(row)
    return pd.DataFrame(rows)


def language_table(grid: Grid) -> pd.DataFrame:
    """Per language evaluated here (and in the anchors' table): the anchors, and the seed-averaged accuracy (and std
    over seeds) of each configuration :func:`shown_configurations` picks."""
    anchored = _anchored(grid)
    table = with_anchors(pd.DataFrame({"language": list(dict.fromkeys(anchored["language"]))}))
    for config_id in shown_configurations(grid):
        rows = anchored[anchored["config_id"] == config_id].set_index("language")
        table[config_id] = table["language"].map(rows["accuracy"])
        table[f"{config_id}_std"] = table["language"].map(rows["accuracy_std"])
    return table


def held_out_table(grid: Grid) -> pd.DataFrame:
    """The anchors on the held-out languages the store did not evaluate (results measured elsewhere, such as
    benchmarks/quality.py's, are set beside these)."""
    evaluated = set(grid.by_language["language"])
    codes = [c for c in language_sets()[HELD_OUT_SET] if c not in evaluated and c in anchor_table()]
    return with_anchors(pd.DataFrame({"language": codes}))
