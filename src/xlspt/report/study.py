"""The study report: what a result store holds, as tables, figures, tested findings and ``report.md``.

:func:`write_report` reads every ``<store>/runs/<run_id>/record.json``, keeps the finished runs
(``status == "done"``), groups the seeds of each configuration together and writes, into one
output directory:

* ``runs.csv``: one row per run and language (the configuration, ``run_id``, ``language``,
  ``accuracy``, ``macro_f1``);
* ``summary.csv``: per configuration, the mean and standard deviation over seeds of the average
  accuracy over several language groups, and the configuration's parameter and storage cost;
* ``languages.csv``: per configuration and language, the accuracy averaged over seeds;
* ``findings.csv``: the study's three findings, tested per model (:mod:`.findings`);
* ``correlations.csv``: per configuration, Spearman correlations of per-language accuracy with
  the language's share of pretraining data and its typological distance from the training language;
* the figures that the grid has the arms for (:mod:`.figures`), and ``report.md``, which shows
  all of it.

A *configuration* is every field of a run's canonical config except ``seed``; configurations
get short ids (``C1``, ``C2``, ...) used in every table and figure. Since any field that
changes a result is part of the configuration, results of different settings (or evaluation
protocols) are never averaged together.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from ..errors import XlsptError
from ..files import write_text_atomic
from ..study.config import RunConfig
from ..study.records import RunRecord, RunStatus
from . import figures as figure_module
from .findings import FOLLOWS_FROM_FREEZE, correlation_table, findings_table
from .summary import CHANCE_SIB200, aggregate

SEED = "seed"
ENGLISH = "eng_Latn"
FAMILIES = ("xglm", "bloom")
MAX_REPORTED_FAILURES = 20

# Per-run averages over language groups: column prefix -> what it averages (report wording).
METRICS = {
    "all": "all languages evaluated",
    "study_52": "the study's 52 languages",
    "pretraining": "the study languages in the model family's pretraining",
    "transfer": "the transfer languages (all but the training language)",
    "english": "English",
}


# ----------------------------------------------------------------------------- reading the store


@dataclass
class Store:
    """The records of a result store, sorted by what they say about their run."""

    root: Path
    done: list[RunRecord]
    failed: list[RunRecord]
    unfinished: list[str] = field(default_factory=list)  # run directories without a finished record
    unreadable: list[str] = field(default_factory=list)  # record files that could not be parsed


def read_store(store: str | Path) -> Store:
    """Read every run record of ``store``; raises :class:`XlsptError` when it holds no finished run."""
    root = Path(store)
    runs_dir = root / "runs"
    if not root.is_dir():
        raise XlsptError(f"result store {root} does not exist: pass --store the directory a study wrote (it holds runs/)")
    if not runs_dir.is_dir():
        raise XlsptError(f"{root} is not a result store (no runs/ directory in it): pass --store the directory a study wrote")
    contents = Store(root=root, done=[], failed=[])
    for run_dir in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        path = run_dir / "record.json"
        if not path.is_file():
            contents.unfinished.append(run_dir.name)  # the record is written last: the run has not finished
            continue
        try:
            record = RunRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as error:
            contents.unreadable.append(f"{path.relative_to(root)}: {error}")
            continue
        if record.status == RunStatus.DONE.value:
            contents.done.append(record)
        elif record.status == RunStatus.FAILED.value:
            contents.failed.append(record)
        else:
            contents.unfinished.append(run_dir.name)
    if not contents.done:
        raise XlsptError(
            f"{root} holds no finished runs ({len(contents.failed)} failed, {len(contents.unfinished)} unfinished, "
            f"{len(contents.unreadable)} unreadable): run the study first, or pass --store the directory it wrote"
        )
    return contents


def _cell(value: Any) -> Any:
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


def _config_value(record: RunRecord, name: str) -> Any:
    """The record's value of a config field, with the default its canonical form leaves out."""
    return record.config.get(name, RunConfig.omitted_value(name))


def _config_values(record: RunRecord, columns: Iterable[str]) -> dict[str, Any]:
    return {c: _config_value(record, c) for c in columns}


def results_table(records: list[RunRecord]) -> pd.DataFrame:
    """One row per run and language: the config columns, ``run_id``, ``protocol``, ``language``, ``accuracy``, ``macro_f1``."""
    columns = config_columns(records)
    rows = []
    for record in records:
        config = {c: _cell(v) for c, v in _config_values(record, columns).items()}
        for result in record.results:
            rows.append(
                {**config, "run_id": record.run_id, "protocol": record.protocol, "language": result["language"],
                 "accuracy": result["accuracy"], "macro_f1": result["macro_f1"]}
            )
    return pd.DataFrame(rows, columns=[*columns, "run_id", "protocol", "language", "accuracy", "macro_f1"])


def protocols_table(records: list[RunRecord]) -> pd.DataFrame:
    """Mean accuracy over languages per configuration (calibration aside), one column per protocol.

    Zero-shot numbers and calibrated ones (protocols a and b) sit side by side, never averaged together.
    """
    columns = [c for c in config_columns(records) if c != "calibration"]
    rows = []
    for record in records:
        results = pd.DataFrame(record.results)
        if results.empty:
            continue
        transfer = results[results["language"] != record.config.get("train_lang", ENGLISH)]
        rows.append({**{c: json.dumps(record.config.get(c), default=str) for c in columns},
                     "protocol": record.protocol, "all": results["accuracy"].mean(),
                     "transfer": transfer["accuracy"].mean() if len(transfer) else math.nan})
    frame = pd.DataFrame(rows)
    varying = [c for c in columns if frame[c].nunique() > 1]
    keys = varying or ["model"]
    table = frame.pivot_table(index=keys, columns="protocol", values=["all", "transfer"], aggfunc="mean")
    table.columns = [f"{metric} [{protocol}]" for metric, protocol in table.columns]
    return table.reset_index()


def consistency_warnings(records: list[RunRecord]) -> list[str]:
    """What differs between runs that one table puts side by side: library versions, the device, and the
    examples read (the data checksum of runs with the same data, training language and target languages)."""
    warnings = []

    def spread(what: str, values: dict[str, list[str]]) -> None:
        if len(values) > 1:
            shown = "; ".join(f"{value}: {len(ids)} run{'s' if len(ids) > 1 else ''}" for value, ids in sorted(values.items()))
            warnings.append(f"the runs differ in {what} ({shown}): their numbers may not be comparable")

    for key in ("xlspt", "torch", "transformers"):
        values: dict[str, list[str]] = {}
        for record in records:
            if record.versions.get(key):
                values.setdefault(str(record.versions[key]), []).append(record.run_id)
        spread(f"{key} version", values)
    devices: dict[str, list[str]] = {}
    for record in records:
        if record.device:
            devices.setdefault(f"{record.device.get('device')} {record.device.get('name', '')}".strip(), []).append(record.run_id)
    spread("device", devices)
    by_data: dict[tuple, dict[str, list[str]]] = {}
    for record in records:
        if record.data_checksum:
            c = record.config
            key = (str(c.get("data")), str(c.get("train_lang")), json.dumps(c.get("langs"), default=str))
            by_data.setdefault(key, {}).setdefault(record.data_checksum[:12], []).append(record.run_id)
    for (data, _, _), values in by_data.items():
        spread(f"the examples read from the same data ({data}; data checksum)", values)
    return warnings


def baseline_table(records: list[RunRecord]) -> pd.DataFrame:
    """Soft prompts against the probe baseline (single zero-shot runs).

    One row per model, shots and prompt configuration (the settings, seed aside, in which that
    model's and shots' prompt runs differ; ``prompt_config`` names them): each method's mean
    accuracy over the languages both evaluated (all, and transfer: without the training language),
    averaged over seeds, and the number of those languages where the prompts' seed-mean accuracy
    beats the probe's.
    """
    ignored = {"seed", "method", "langs"}
    rows = []
    for record in records:
        config = record.config
        for result in record.results:
            rows.append({"model": config.get("model"), "shots": config.get("shots"), "method": _config_value(record, "method"),
                         "seed": config.get("seed"), "language": result["language"], "accuracy": result["accuracy"],
                         "transfer": result["language"] != config.get("train_lang", ENGLISH),
                         "setting": json.dumps({k: v for k, v in sorted(config.items()) if k not in ignored}, default=str)})
    frame = pd.DataFrame(rows)
    out = []
    for (model, shots), group in frame.groupby(["model", "shots"], sort=True):
        probes = group[group["method"] == "probe"]
        prompt_settings = sorted(group.loc[group["method"] == "prompt", "setting"].unique())
        if probes.empty or not prompt_settings:
            continue
        parsed = [json.loads(x) for x in prompt_settings]
        varying = sorted({k for d in parsed for k in d if len({json.dumps(e.get(k), default=str) for e in parsed}) > 1})
        for setting, fields in zip(prompt_settings, parsed):
            prompts = group[(group["method"] == "prompt") & (group["setting"] == setting)]
            shared = sorted(set(prompts["language"]) & set(probes["language"]))
            row = {"model": model, "shots": shots,
                   "prompt_config": ", ".join(f"{k}={fields.get(k)}" for k in varying) or "-"}
            means = {}
            for method, runs in (("prompt", prompts), ("probe", probes)):
                runs = runs[runs["language"].isin(shared)]
                row[f"{method}_all"] = runs.groupby("seed")["accuracy"].mean().mean()
                row[f"{method}_transfer"] = runs[runs["transfer"]].groupby("seed")["accuracy"].mean().mean()
                row[f"{method}_seeds"] = runs["seed"].nunique()
                means[method] = runs.groupby("language")["accuracy"].mean()
            row["prompt_minus_probe"] = row["prompt_all"] - row["probe_all"]
            row["languages_prompt_better"] = int((means["prompt"] > means["probe"]).sum())
            row["languages"] = len(shared)
            out.append(row)
    return pd.DataFrame(out)


def _baseline_section(table: pd.DataFrame) -> list[str]:
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


def _sort_key(value: Any) -> tuple:
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
    values = [_config_values(record, columns) for record in records]
    keys = [json.dumps(v, sort_keys=True, default=str) for v in values]
    first_config = {}
    for key, config in zip(keys, values):
        first_config.setdefault(key, {c: _cell(v) for c, v in config.items()})
    ordered = sorted(first_config, key=lambda k: tuple(_sort_key(first_config[k][c]) for c in columns))
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
    summary["seeds"] = by_config["seed"].agg(lambda s: " ".join(str(v) for v in sorted(s, key=_sort_key)))
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


# ----------------------------------------------------------------------------- Markdown


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


def _values(grid: Grid, column: str) -> str:
    values = sorted({json.dumps(v, default=str) for v in grid.configs[column]}, key=lambda v: _sort_key(json.loads(v)))
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


def _store_section(store: Store, grid: Grid) -> list[str]:
    models = sorted({str(m) for m in grid.configs["model"]})
    languages = sorted(grid.by_language["language"].unique())
    lines = [
        "## What the store holds",
        "",
        f"Store: `{store.root}`. Runs finished: **{len(store.done)}**, failed: **{len(store.failed)}** "
        f"(left out), unfinished: {len(store.unfinished)} (no record yet, left out)"
        + (f", unreadable records: {len(store.unreadable)} (left out)" if store.unreadable else "")
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
    seeds = sorted({s for s in grid.runs["seed"]}, key=_sort_key)
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
    if store.unreadable:
        lines += ["Unreadable records (left out):", ""] + [f"- `{u}`" for u in store.unreadable] + [""]
    return lines


def _configurations_section(grid: Grid) -> list[str]:
    fields = [c for c in grid.label_fields if c != "langs"]  # language lists are long: counted instead
    table = pd.DataFrame({"id": grid.configs.index})
    for column in fields:
        table[column] = [describe({column: v}, [column]) for v in grid.configs[column]]
    table["languages"] = grid.configs["n_languages"].to_numpy()
    table["seeds"] = grid.configs["seeds"].to_numpy()
    return ["## Configurations", "", "Ids used in every table and figure below, with the settings that vary in the store:",
            "", markdown_table(table), ""]


def _summary_section(grid: Grid) -> list[str]:
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


def _findings_section(findings: pd.DataFrame) -> list[str]:
    table = pd.DataFrame({
        "finding": findings["finding"],
        "model": findings["model"],
        "verdict": findings["verdict"],
        "effect": [("–" if pd.isna(e) else f"{e:+.1f} {u}") for e, u in zip(findings["effect"], findings["effect_unit"])],
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
        "bounds reach 10%, contradicted when either upper bound stays below 10%). **not enough runs** means "
        "the store lacks the arms to compare.",
        "",
        markdown_table(table),
        "",
    ]


def _figures_section(figures: list, out: Path) -> list[str]:
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


def _correlations_section(correlations: pd.DataFrame) -> list[str]:
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


def _cost_section(grid: Grid) -> list[str]:
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


def _failures_section(store: Store) -> list[str]:
    if not store.failed:
        return []
    lines = ["## Failed runs (left out of every table)", ""]
    for record in store.failed[:MAX_REPORTED_FAILURES]:
        error = (record.error or "no error message").strip().splitlines()
        lines.append(f"- `{record.run_id}`: {error[0] if error else 'no error message'}")
    if len(store.failed) > MAX_REPORTED_FAILURES:
        lines.append(f"- ... and {len(store.failed) - MAX_REPORTED_FAILURES} more")
    lines.append("")
    return lines


# ----------------------------------------------------------------------------- the report


def _protocols_section(protocols: pd.DataFrame, count: int) -> list[str]:
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
        "findings": [one dict per row of the findings table]}``.

    Raises:
        XlsptError: ``store`` does not exist, is not a result store, or holds no finished run.
    """
    contents = read_store(store)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise XlsptError(f"--out {out} is a file: pass a directory for the report")
    # The study's analyses read zero-shot results only; calibrated runs get their own side-by-side table.
    study_runs = [r for r in contents.done if r.protocol == "zero-shot" and _config_value(r, "method") == "prompt"]
    probes = [r for r in contents.done if _config_value(r, "method") == "probe"]
    if not study_runs:
        raise XlsptError(f"{store} holds no zero-shot runs (only calibrated ones): the study's report needs calibration: zero-shot runs")
    grid = build_grid(study_runs)
    written: list[Path] = []
    warnings = consistency_warnings(contents.done)

    _write_csv(out / "runs.csv", results_table(contents.done), written)
    calibrated = len(study_runs) + len(probes) < len(contents.done)
    if probes:
        baseline = baseline_table([r for r in contents.done if r.protocol == "zero-shot" and r.config.get("ensemble", 1) == 1])
        _write_csv(out / "baseline.csv", baseline, written)
    if calibrated:
        protocols = protocols_table(contents.done)
        _write_csv(out / "protocols.csv", protocols, written)
    _write_csv(out / "summary.csv", summary_table(grid), written)
    _write_csv(out / "languages.csv", language_table(grid), written)
    findings = findings_table(grid)
    _write_csv(out / "findings.csv", findings, written)
    correlations = correlation_table(grid)
    _write_csv(out / "correlations.csv", correlations.drop(columns=["points"]), written)
    figures = figure_module.draw_all(grid, correlations, out)
    written += [f.path for f in figures if f.path is not None]

    lines = [
        "# Study report",
        "",
        f"Soft prompt tuning for cross-lingual transfer on SIB-200 (7 topics): {len(contents.done)} finished runs.",
        "",
        *([f"> **Warning:** {w}." for w in warnings] + [""] if warnings else []),
        *_store_section(contents, grid),
        *_configurations_section(grid),
        *_summary_section(grid),
        *_findings_section(findings),
        *_figures_section(figures, out),
        *_correlations_section(correlations),
        *_cost_section(grid),
        *_failures_section(contents),
        *(_protocols_section(protocols, len(contents.done) - len(study_runs) - len(probes)) if calibrated else []),
        *(_baseline_section(baseline) if probes else []),
        "## Files",
        "",
        "- `runs.csv`: one row per run and language (with its `protocol`); `summary.csv`: per configuration, over seeds; "
        "`languages.csv`: per configuration and language, over seeds; `findings.csv`; `correlations.csv`"
        + ("; `protocols.csv`: zero-shot and calibrated accuracy side by side" if calibrated else "")
        + ("; `baseline.csv`: soft prompts against the probe baseline." if probes else "."),
        "",
    ]
    write_text_atomic(out / "report.md", "\n".join(lines))
    written.append(out / "report.md")
    return {
        "files": [str(p) for p in written],
        "runs": len(contents.done),
        "failed": len(contents.failed),
        "warnings": warnings,
        "findings": [{k: _plain(v) for k, v in row.items()} for row in findings.to_dict("records")],
    }
