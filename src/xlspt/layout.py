"""The files of a run folder, named once for every layer that reads or writes them.

A run folder holds the trained artifact (``prompt.safetensors`` + ``prompt.json``, or
``probe.safetensors`` + ``probe.json``, or for the LoRA method ``prompt.safetensors`` +
``adapter_model.safetensors`` + ``lora.json``), its per-language results (``results.csv``), per-class
scores (``per_class.csv``), for a single run a confusion matrix per language
(``confusion/<lang>.png``) and every scored text with its probabilities (``predictions.jsonl``), a summary (``summary.txt``, ``summary.json``), a model card
(``README.md``: the folder can be shared like an adapter), with ``save_model`` the trained model
weights, and the run's record (``record.json``, written last). Every file is written whole.
"""

from __future__ import annotations

import time
from pathlib import Path

from .errors import XlsptError

PROMPT_FILE = "prompt.safetensors"
PROMPT_SIDECAR = "prompt.json"
PROBE_FILE = "probe.safetensors"
PROBE_SIDECAR = "probe.json"
LORA_SIDECAR = "lora.json"
#: PEFT's file name for an adapter's weights (its key names too: ``base_model.model.<layer>.lora_A.weight``)
ADAPTER_FILE = "adapter_model.safetensors"
PROMPT_FILES = (PROMPT_FILE, PROMPT_SIDECAR)
PROBE_FILES = (PROBE_FILE, PROBE_SIDECAR)
LORA_FILES = (PROMPT_FILE, ADAPTER_FILE, LORA_SIDECAR)
RESULTS_FILE = "results.csv"
PER_CLASS_FILE = "per_class.csv"
SUMMARY_FILE = "summary.txt"
SUMMARY_JSON = "summary.json"
PREDICTIONS_FILE = "predictions.jsonl"
RECORD_FILE = "record.json"
MODEL_FILE = "model.safetensors"
CARD_FILE = "README.md"
CONFUSION_DIR = "confusion"
LOCK_FILE = ".lock"
RESULT_FILES = (RESULTS_FILE, SUMMARY_FILE, SUMMARY_JSON, PER_CLASS_FILE, PREDICTIONS_FILE)
ARTIFACT_FILES = (*PROMPT_FILES, *PROBE_FILES, ADAPTER_FILE, LORA_SIDECAR)
RUN_FILES = (*ARTIFACT_FILES, *RESULT_FILES, RECORD_FILE, MODEL_FILE, CARD_FILE)


def default_out_dir(model_name: str) -> Path:
    stem = Path(model_name).name.replace("/", "-") or "model"
    return Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def prepare_out_dir(out: str | Path | None, model_name: str, overwrite: bool, *, files=RUN_FILES) -> Path:
    """The output folder: refuses a file, and earlier results unless ``overwrite``."""
    path = Path(out) if out else default_out_dir(model_name)
    if path.exists() and not path.is_dir():
        raise XlsptError(f"--out {path} is a file: pass a directory")
    existing = [name for name in files if (path / name).exists()]
    if existing and not overwrite:
        raise XlsptError(f"{path} already holds results ({', '.join(existing)}): pass --overwrite or another --out")
    return path


def clear_files(out: Path, files=RUN_FILES) -> None:
    """Remove ``files`` (and with the per-class scores, the confusion figures) from ``out``."""
    for name in files:
        (out / name).unlink(missing_ok=True)
    if PER_CLASS_FILE in files and (out / CONFUSION_DIR).is_dir():
        for png in (out / CONFUSION_DIR).glob("*.png"):
            png.unlink()
