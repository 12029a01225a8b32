"""Tables read straight from the run records (not the grid): per run and language, calibration
protocols side by side, soft prompts against the probe baseline, and what the runs differ in."""

from __future__ import annotations

import json
import math

import pandas as pd

from ..study.records import RunRecord
from .grid import ENGLISH, config_columns, config_value, config_values, table_cell


def results_table(records: list[RunRecord]) -> pd.DataFrame:
    """One row per run and language: the config columns, ``run_id``, ``protocol``, ``language``, ``accuracy``, ``macro_f1``."""
    columns = config_columns(records)
    rows = []
    for record in records:
        config = {c: table_cell(v) for c, v in config_values(record, columns).items()}
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
            key = (str(c.get("train_lang")), json.dumps(c.get("langs"), default=str))
            by_data.setdefault(key, {}).setdefault(record.data_checksum[:12], []).append(record.run_id)
    for (train_lang, _), values in by_data.items():
        spread(f"the examples read for the same languages (trained on {train_lang}; data checksum)", values)
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
            rows.append({"model": config.get("model"), "shots": config.get("shots"), "method": config_value(record, "method"),
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
