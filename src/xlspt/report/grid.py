"""The grid: a result store's finished runs read through :class:`~xlspt.study.store.ResultStore`
and shaped into pandas frames of configurations, seeds and languages.

A *configuration* is every field of a run's canonical config except ``seed``; configurations
get short ids (``C1``, ``C2``, ...) used in every table and figure. Since any field that
changes a result is part of the configuration, results of different settings (or evaluation
protocols) are never averaged together.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from ..errors import XlsptError
from ..results.aggregate import aggregate
from ..study.config import RunConfig
from ..study.records import RunRecord
from ..study.store import ResultStore, StoreContents

SEED = "seed"
ENGLISH = "eng_Latn"
FAMILIES = ("xglm", "bloom")
FOLLOWS_FROM_FREEZE = ("engine", "model_lr", "save_model")  # resolved differently when the model trains

# Per-run averages over language groups: column prefix -> what it averages (report wording).
METRICS = {
    "all": "all languages evaluated",
    "study_52": "the study's 52 languages",
    "pretraining": "the study languages in the model family's pretraining",
    "transfer": "the transfer languages (all but the training language)",
    "english": "English",
}


# ----------------------------------------------------------------------------- reading the store


def read_store(store: str | Path) -> StoreContents:
    """Every run record of ``store``; raises :class:`XlsptError` when it holds no finished run."""
    root = Path(store)
    if not root.is_dir():
        raise XlsptError(f"result store {root} does not exist: pass --store the directory a study wrote (it holds runs/)")
    results = ResultStore(root, create=False)
    if not results.exists():
        raise XlsptError(f"{root} is not a result store (no runs/ directory in it): pass --store the directory a study wrote")
    contents = results.contents()
    if not contents.done:
        raise XlsptError(
            f"{root} holds no finished runs ({len(contents.failed)} failed, {len(contents.unfinished)} unfinished, "
            f"{len(contents.unreadable)} unreadable): run the study first, or pass --store the directory it wrote"
        )
    return contents


# ----------------------------------------------------------------------------- config values


def table_cell(value: Any) -> Any:
    """A config value as a table cell: lists and dicts JSON-encoded (hashable, one CSV column)."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return value


def config_columns(records: Iterable[RunRecord]) -> list[str]:
    """Every config field that occurs in ``records``, in the order they first appear."""
    columns: dict[str, None] = {}
    for record in records:
        columns.update(dict.fromkeys(record.config))
    return list(columns)


def config_value(record: RunRecord, name: str) -> Any:
    """The record's value of a config field, with the default its canonical form leaves out."""
    return record.config.get(name, RunConfig.omitted_value(name))


def config_values(record: RunRecord, columns: Iterable[str]) -> dict[str, Any]:
    return {c: config_value(record, c) for c in columns}


# ----------------------------------------------------------------------------- naming configurations


def model_family(model: str) -> str | None:
    """``"xglm"`` or ``"bloom"`` when the model's name (Hub id or path) names that family, else None
    (Gemma, for example, published no per-language pretraining shares)."""
    name = str(model).lower()
    return next((family for family in FAMILIES if family in name), None)


def short_model_name(model: str) -> str:
    """``facebook/xglm-564M`` -> ``xglm-564M``; a local path -> its last component."""
    return str(model).rstrip("/").rsplit("/", 1)[-1]


def describe(config: Mapping[str, Any], fields: Iterable[str]) -> str:
    """A short readable label of ``config``'s values of ``fields``, e.g. ``xglm-564M, MF, length 4``."""
    parts = []
    for name in fields:
        value = config.get(name)
        if name == "model":
            parts.append(short_model_name(value))
        elif name == "freeze":
            parts.append("MF" if value else "no MF")
        elif name == "prompt_length":
            parts.append(f"length {value}")
        elif name == "shots":
            parts.append(f"{value} shots")
        elif name == "reparam_hidden":
            parts.append(f"reparam {value}" if value else "no reparam")
        elif name == "langs":
            parts.append(_describe_languages(value))
        else:
            parts.append(f"{name}={value}")
    return ", ".join(parts)


def _describe_languages(value: Any) -> str:
    """``langs`` as written (``"52"``, ``"all"``, codes) or as a JSON-encoded list, in a few words."""
    if isinstance(value, str) and value.startswith("["):
        value = json.loads(value)
    if isinstance(value, (list, tuple)):
        return f"{len(value)} languages" if len(value) > 3 else "languages " + "+".join(value)
    return {"52": "the 52 study languages", "all": "all languages"}.get(str(value), f"languages {value}")


# ----------------------------------------------------------------------------- the grid of configurations


@dataclass
class Grid:
    """The finished runs of a store, grouped into configurations (all config fields but ``seed``).

    Attributes:
        config_columns: the config fields that define a configuration.
        varying: those of them that take more than one value in the store.
        label_fields: the varying fields that labels show (not those that merely follow from ``freeze``).
        configs: index = configuration id (``C1``...); the config columns (values as in the
            records, lists JSON-encoded), ``family``, ``label`` (the varying fields) and the
            summary over seeds (see :func:`summary_table`).
        runs: one row per finished run: ``config_id``, ``run_id``, ``seed``, costs, environment and
            the run's average accuracy over each language group of :data:`METRICS`.
        by_language: ``config_id, language, accuracy, accuracy_std, macro_f1, n_seeds``: the mean
            (and std) over the configuration's seeds of each language's scores.
    """

    config_columns: list[str]
    varying: list[str]
    label_fields: list[str]
    configs: pd.DataFrame
    runs: pd.DataFrame
    by_language: pd.DataFrame

    def label(self, config_id: str, leave_out: Iterable[str] = ()) -> str:
        """The configuration's varying fields (except ``leave_out``) as a readable label."""
        skip = set(leave_out)
        return describe(self.configs.loc[config_id], [f for f in self.label_fields if f not in skip])

    def accuracy_by_language(self, config_id: str, transfer_only: bool = True) -> pd.Series:
        """Seed-averaged accuracy per language of one configuration (without its training language)."""
        rows = self.by_language[self.by_language["config_id"] == config_id]
        if transfer_only:
            rows = rows[rows["language"] != self.configs.at[config_id, "train_lang"]]
        return rows.set_index("language")["accuracy"]


def sort_key(value: Any) -> tuple:
    """Orders mixed config values: None first, then numbers, then everything else as text."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (0, 0, "")
    if isinstance(value, (bool, int, float)):
        return (1, float(value), "")
    return (2, 0, str(value))


def _run_averages(record: RunRecord) -> dict[str, float]:
    """A run's mean accuracy over each language group of :data:`METRICS` (NaN where it has none)."""
    out = dict.fromkeys(METRICS, math.nan)
    results = pd.DataFrame(record.results, columns=["language", "accuracy", "macro_f1", "n"])
    if results.empty:
        return out
    train_lang = record.config.get("train_lang", ENGLISH)
    groups = aggregate(results, train_lang)
    out["all"] = groups["all"]["accuracy"]["mean"]
    if "transfer" in groups:
        out["transfer"] = groups["transfer"]["accuracy"]["mean"]
    elif train_lang not in set(results["language"]):
        out["transfer"] = out["all"]  # the training language was not evaluated: every language is a transfer one
    if "study_52" in groups:
        out["study_52"] = groups["study_52"]["accuracy"]["mean"]
    family = model_family(record.config.get("model", ""))
    if family and f"{family}_pretraining" in groups:
        out["pretraining"] = groups[f"{family}_pretraining"]["accuracy"]["mean"]
    english = results.loc[results["language"] == ENGLISH, "accuracy"]
    if len(english):
        out["english"] = float(english.iloc[0])
    return out


def _display_names(models: pd.Series) -> list[str]:
    """Short model names, or the full name where two different models would share a short one."""
    full = list(dict.fromkeys(str(m) for m in models))
    shorts = [short_model_name(m) for m in full]
    names = {m: s if shorts.count(s) == 1 else m for m, s in zip(full, shorts)}
    return [names[str(m)] for m in models]


def _determined_by(configs: pd.DataFrame, field_name: str, by: str) -> bool:
    """Whether ``field_name`` takes a single value for each value of ``by`` across ``configs``."""
    pairs = {(json.dumps(a, default=str), json.dumps(b, default=str)) for a, b in zip(configs[by], configs[field_name])}
    return len(pairs) == len({a for a, _ in pairs})


def _environment(record: RunRecord) -> str:
    """The software versions and device a run used, as one comparable string."""
    return json.dumps({"versions": record.versions, "device": record.device}, sort_keys=True)


def build_grid(records: list[RunRecord]) -> Grid:
    """Group finished runs into configurations and average their results over seeds."""
    columns = [c for c in config_columns(records) if c != SEED]
    values = [config_values(record, columns) for record in records]
    keys = [json.dumps(v, sort_keys=True, default=str) for v in values]
    first_config = {}
    for key, config in zip(keys, values):
        first_config.setdefault(key, {c: table_cell(v) for c, v in config.items()})
    ordered = sorted(first_config, key=lambda k: tuple(sort_key(first_config[k][c]) for c in columns))
    ids = {key: f"C{i + 1}" for i, key in enumerate(ordered)}

    configs = pd.DataFrame([first_config[k] for k in ordered], index=[ids[k] for k in ordered], columns=columns, dtype=object)
    configs.index.name = "config_id"
    varying = [c for c in columns if configs[c].map(lambda v: json.dumps(v, default=str)).nunique() > 1]
    # The engine and model learning rate that follow from freeze=false say nothing a label's "no MF" does not.
    label_fields = [f for f in varying if not (f in FOLLOWS_FROM_FREEZE and "freeze" in varying and _determined_by(configs, f, "freeze"))]
    configs["model_name"] = _display_names(configs["model"])
    configs["family"] = configs["model"].map(model_family)
    configs["label"] = [describe(configs.loc[i], label_fields) or "the only configuration" for i in configs.index]

    run_rows, language_rows = [], []
    for key, record in zip(keys, records):
        config_id = ids[key]
        run_rows.append({
            "config_id": config_id, "run_id": record.run_id, "seed": record.config.get(SEED),
            "trainable_parameters": record.trainable_parameters, "stored_bytes": record.stored_bytes,
            "environment": _environment(record), **_run_averages(record),
        })
        for result in record.results:
            language_rows.append({"config_id": config_id, "run_id": record.run_id, **result})
    runs = pd.DataFrame(run_rows)
    languages = pd.DataFrame(language_rows, columns=["config_id", "run_id", "language", "accuracy", "macro_f1", "n"])
    by_language = (
        languages.groupby(["config_id", "language"], sort=False)
        .agg(accuracy=("accuracy", "mean"), accuracy_std=("accuracy", "std"),
             macro_f1=("macro_f1", "mean"), n_seeds=("run_id", "nunique"))
        .reset_index()
    )
    grid = Grid(config_columns=columns, varying=varying, label_fields=label_fields, configs=configs, runs=runs,
                by_language=by_language)
    _add_seed_summary(grid)
    return grid


def _add_seed_summary(grid: Grid) -> None:
    """Mean and std over seeds of every per-run average, the costs and the environment, per configuration."""
    by_config = grid.runs.groupby("config_id", sort=False)
    summary = pd.DataFrame(index=grid.configs.index)
    summary["n_seeds"] = by_config["run_id"].nunique()
    summary["seeds"] = by_config["seed"].agg(lambda s: " ".join(str(v) for v in sorted(s, key=sort_key)))
    languages = grid.by_language.groupby("config_id")["language"].nunique()
    summary["n_languages"] = languages.reindex(summary.index, fill_value=0)
    for name in METRICS:
        summary[f"{name}_mean"] = by_config[name].mean()
        summary[f"{name}_std"] = by_config[name].std(ddof=1)  # NaN for a single seed: no spread to report
    # Every seed trains the same number of parameters; the mean keeps a mixed store honest.
    summary["trainable_parameters"] = by_config["trainable_parameters"].mean()
    summary["stored_bytes"] = by_config["stored_bytes"].mean()
    summary["mixed_environment"] = by_config["environment"].nunique() > 1
    for column in summary:
        grid.configs[column] = summary[column]


def summary_table(grid: Grid) -> pd.DataFrame:
    """Per configuration: its config fields, the seeds, and mean/std over seeds of each group average."""
    columns = ["n_seeds", "seeds", "n_languages"]
    columns += [f"{name}_{stat}" for name in METRICS for stat in ("mean", "std")]
    columns += ["trainable_parameters", "stored_bytes", "mixed_environment"]
    return grid.configs[grid.config_columns + columns].reset_index()


def language_table(grid: Grid) -> pd.DataFrame:
    """Per configuration and language: accuracy and macro-F1 averaged over seeds."""
    return grid.by_language.merge(grid.configs[["label"]], left_on="config_id", right_index=True)
