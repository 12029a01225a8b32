"""The files of a run folder, one set of rules for ``xlspt run``, ``xlspt evaluate`` and the sweep store.

A run folder holds the prompt (``prompt.safetensors`` + ``prompt.json``), its per-language
results (``results.csv``), per-class scores (``per_class.csv``) and, for a single run, a confusion
matrix per language (``confusion/<lang>.png``), a summary (``summary.txt``, ``summary.json``), a
model card (``README.md``: the folder can be shared like an adapter) and the run's record
(``record.json``, written last). Every file is written whole (atomically).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from ..errors import XlsptError
from ..evaluate import per_class_table
from ..files import write_json_atomic, write_text_atomic, write_with_atomic
from ..report import aggregate, format_comparison_table, format_results_table

PROMPT_FILES = ("prompt.safetensors", "prompt.json")
RESULTS_FILE = "results.csv"
SUMMARY_FILE = "summary.txt"
SUMMARY_JSON = "summary.json"
RECORD_FILE = "record.json"
MODEL_FILE = "model.safetensors"
PER_CLASS_FILE = "per_class.csv"
CONFUSION_DIR = "confusion"
CARD_FILE = "README.md"
RESULT_FILES = (RESULTS_FILE, SUMMARY_FILE, SUMMARY_JSON, PER_CLASS_FILE)
PROBE_FILES = ("probe.safetensors", "probe.json")
RUN_FILES = (*PROMPT_FILES, *PROBE_FILES, *RESULT_FILES, RECORD_FILE, MODEL_FILE, CARD_FILE)


def default_out_dir(model_name: str) -> Path:
    stem = Path(model_name).name.replace("/", "-") or "model"
    return Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def prepare_out_dir(out: str | Path | None, model_name: str, overwrite: bool, *, files=RUN_FILES) -> Path:
    """The output folder: refuses a file, and earlier results unless ``overwrite`` (then removes them)."""
    path = Path(out) if out else default_out_dir(model_name)
    if path.exists() and not path.is_dir():
        raise XlsptError(f"--out {path} is a file: pass a directory")
    existing = [name for name in files if (path / name).exists()]
    if existing and not overwrite:
        raise XlsptError(f"{path} already holds results ({', '.join(existing)}): pass --overwrite or another --out")
    return path


def clear_files(out: Path, files=RUN_FILES) -> None:
    for name in files:
        (out / name).unlink(missing_ok=True)
    if PER_CLASS_FILE in files and (out / CONFUSION_DIR).is_dir():
        for png in (out / CONFUSION_DIR).glob("*.png"):
            png.unlink()


def write_results(out: Path, results: pd.DataFrame, summary_text: str, summary: dict, *, figures: bool = False) -> None:
    """``results.csv``, ``summary.txt``, ``summary.json`` and ``per_class.csv`` in ``out``, each written whole;
    with ``figures`` also a confusion matrix per language (``confusion/<lang>.png``)."""
    write_with_atomic(out / RESULTS_FILE, lambda tmp: results.to_csv(tmp, index=False, float_format="%.6f"))
    per_class = per_class_table(results)
    if per_class is not None:
        from ..report.classes import write_class_reports

        if figures:
            matrices = {lang: np.asarray(m) for lang, m in results.attrs.get("confusion", {}).items()}
            write_class_reports(out, per_class, matrices, results.attrs["labels"])
        else:
            write_with_atomic(out / PER_CLASS_FILE, lambda tmp: per_class.to_csv(tmp, index=False, float_format="%.6f"))
    write_text_atomic(out / SUMMARY_FILE, summary_text)
    write_json_atomic(out / SUMMARY_JSON, summary)


def results_summary(metadata: dict, results: pd.DataFrame) -> tuple[str, str, dict]:
    """The printed table, the ``summary.txt`` text and the ``summary.json`` content of one prompt's results."""
    train_lang = metadata.get("data", {}).get("train_language")
    groups = aggregate(results, train_lang)
    table = format_results_table(results, groups, n_classes_of(metadata))
    protocol = protocol_of(results)
    ensemble = metadata.get("ensemble")
    probe = metadata.get("method") == "probe"
    header = [
        f"xlspt {__version__} - {'probe baseline' if probe else 'soft prompt'} on {metadata['model']}",
        f"probe: logistic regression on the read-out state of text + EOS, C={metadata.get('C')}" if probe
        else f"prompt: {metadata.get('prompt_config')}",
        f"training: {metadata.get('data', {}).get('shots_per_class')} shots/class of {train_lang}, "
        f"best epoch {metadata.get('best_epoch')}, seed {metadata.get('train_config', {}).get('seed', metadata.get('data', {}).get('sampling_seed'))}",
        *([f"ensemble: {ensemble['size']} prompts (seeds {ensemble['seeds']}, {ensemble['sampling']} samples, "
           f"{ensemble['distinct_train_examples']} distinct training examples); the table is their vote"] if ensemble else []),
        *([f"label words: {metadata['label_words']}"] if "label_words" in metadata else [f"labels: {metadata.get('labels')}"]),
        f"protocol: {describe_protocol(protocol)}",
        *([f"device: {describe_device(results.attrs['device'])}"] if results.attrs.get("device") else []),
        "",
    ]
    summary = {"model": metadata["model"], "protocol": protocol, "groups": groups}
    if results.attrs.get("device"):
        summary["device"] = results.attrs["device"]
    if ensemble:
        summary["ensemble"] = {k: v for k, v in ensemble.items() if k != "members"}
    return f"protocol: {describe_protocol(protocol)}\n{table}", "\n".join(header) + table + "\n", summary


def n_classes_of(metadata: dict) -> int:
    """The number of classes a prompt or probe was trained on (sidecars before any-task data: SIB-200's 7)."""
    return len(metadata.get("labels") or metadata.get("label_words") or range(7))


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


def describe_protocol(name: str) -> str:
    """``b:unlabeled(dev)`` -> a line a reader understands."""
    if name == "zero-shot":
        return "zero-shot (the study's: English training data only, no correction)"
    family = name.split(":", 1)[0]
    what = {"a": "no target-language data", "b": "unlabeled target-language text, transductive"}.get(family, "")
    return f"{name} (protocol {family}: {what}; not comparable with zero-shot numbers)"


def write_run_results(out: Path, metadata: dict, results: pd.DataFrame, *, figures: bool = False) -> str:
    """Write one prompt's results, summary and model card into its run folder; returns the printed table."""
    from ..hub import model_card

    table, text, summary = results_summary(metadata, results)
    write_results(out, results, text, summary, figures=figures)
    write_text_atomic(out / CARD_FILE, model_card(metadata, results))
    return table


def comparison(names: list[str], metadatas: list[dict], all_results: list[pd.DataFrame]) -> tuple[str, pd.DataFrame, dict]:
    """Several prompts' tables and a row per prompt; results in long form with a ``prompt`` column."""
    sections, groups = [], []
    for name, metadata, results in zip(names, metadatas, all_results):
        groups.append(aggregate(results, metadata.get("data", {}).get("train_language")))
        sections.append(f"== {name} [{protocol_of(results)}]\n{format_results_table(results, groups[-1], n_classes_of(metadata))}")
    text = "\n\n".join([*sections, f"== comparison\n{format_comparison_table(list(names), groups)}"])
    combined = pd.concat([results.assign(prompt=name) for name, results in zip(names, all_results)], ignore_index=True)
    combined = combined[["prompt", *all_results[0].columns]]
    if all("per_class" in r.attrs for r in all_results):  # one per-class table, a prompt column first
        combined.attrs = {"per_class": [{"prompt": n, **row} for n, r in zip(names, all_results) for row in r.attrs["per_class"]],
                          "labels": all_results[0].attrs["labels"]}
    summary = {"model": metadatas[0]["model"], "prompts": [
        {"prompt": n, "protocol": protocol_of(r), "groups": g} for n, r, g in zip(names, all_results, groups)]}
    return text, combined, summary


def write_comparison(out: Path, text: str, combined: pd.DataFrame, summary: dict) -> None:
    n = len(summary["prompts"])
    write_results(out, combined, f"xlspt {__version__} - {n} prompts on {summary['model']}\n\n{text}\n", summary)
