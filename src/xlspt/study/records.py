"""Typed result records: what the store keeps for one run (lm-evaluation-harness's ``result_schema`` idea).

A record is one JSON file, ``<store>/runs/<run_id>/record.json``, written whole (atomically)
after the run's prompt and result files; its presence is what makes a run count as finished.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, field
from enum import Enum

RECORD_FORMAT = 1


class RunStatus(str, Enum):
    """Where a run of a sweep stands."""

    DONE = "done"
    FAILED = "failed"
    RUNNING = "running"
    PENDING = "pending"


@dataclass
class LanguageResult:
    """One target language's scores on its test split."""

    language: str
    accuracy: float
    macro_f1: float
    n: int


@dataclass
class RunRecord:
    """Everything a store keeps about one finished (or failed) run.

    Attributes:
        run_id: hash of the run's canonical configuration (``RunConfig.run_id``).
        status: ``"done"`` or ``"failed"``.
        config: the canonical configuration (``RunConfig.canonical()``: ``auto`` values resolved).
        results: per-language accuracy and macro-F1 (empty for a failed run).
        best_epoch, best_val_loss, history: the training curve (``epoch, train_loss, val_loss``
            per epoch) and the epoch kept.
        trainable_parameters: parameters that trained (prompt and reparameterization network, plus
            the model's when it was not frozen).
        stored_parameters, stored_bytes: numbers and bytes of what a user keeps to reuse the result
            (the exported prompt; with ``save_model`` the model weights too).
        prompt_file: the prompt's path relative to the store (``None`` when it could not be kept).
        model_file: the trained model weights relative to the store, when ``save_model`` was set.
        timings: seconds: ``train``, ``evaluate``, ``total`` (shared work is split evenly).
        versions: ``xlspt``, ``torch``, ``transformers``, ``python``.
        device: ``device`` (cpu, cuda:0, ...), ``dtype`` and ``name`` (CPU model or GPU name).
        notes: things a reader must know (for example that model weights were not saved).
        error: the error message of a failed run.
        protocol: the calibration protocol of ``results`` (``zero-shot`` is the study's).
        member_results: for an ensemble, each member's own per-language results (same protocol).
        data_checksum: SHA-256 of the examples the run read (training language's train and dev, each
            target's test split; :meth:`~xlspt.data.TaskData.checksum`).
    """

    run_id: str
    status: str
    config: dict
    results: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    best_val_loss: float | None = None
    history: list[dict] = field(default_factory=list)
    trainable_parameters: int | None = None
    stored_parameters: int | None = None
    stored_bytes: int | None = None
    prompt_file: str | None = None
    model_file: str | None = None
    timings: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    device: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    started: str | None = None
    finished: str | None = None
    protocol: str = "zero-shot"
    member_results: list[list[dict]] | None = None
    data_checksum: str | None = None
    format: int = RECORD_FORMAT

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RunRecord":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def library_versions() -> dict[str, str]:
    import torch
    import transformers

    from .. import __version__

    return {
        "xlspt": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def device_info(device, dtype) -> dict[str, str]:
    import torch

    device = str(device)
    if device.startswith("cuda") and torch.cuda.is_available():
        name = torch.cuda.get_device_name(torch.device(device))
    else:
        name = _cpu_name()
    return {"device": device, "dtype": str(dtype).removeprefix("torch."), "name": name,
            "threads": torch.get_num_threads() if device == "cpu" else None}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
