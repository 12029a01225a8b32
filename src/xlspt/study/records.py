"""Typed result records: what the store keeps for one run (lm-evaluation-harness's ``result_schema`` idea).

A record is one JSON file, ``<store>/runs/<run_id>/record.json``, written whole (atomically)
after the run's prompt and result files; its presence is what makes a run count as finished.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum

from ..results.device import device_info, library_versions  # noqa: F401 (the record's fields)

RECORD_FORMAT = 1


class RunStatus(str, Enum):
    """Where a run of a sweep stands."""

    DONE = "done"
    FAILED = "failed"
    RUNNING = "running"
    PENDING = "pending"


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
        evaluation_engine: the pass that scored the test sentences (``cached`` or ``naive``).
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
    finished: str | None = None
    protocol: str = "zero-shot"
    member_results: list[list[dict]] | None = None
    data_checksum: str | None = None
    evaluation_engine: str | None = None
    format: int = RECORD_FORMAT

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """One line for a finished run: its id, its settings and its mean accuracy (or its error)."""
        c = self.config
        name = f"{c.get('model')} len{c.get('prompt_length')} reparam{c.get('reparam_hidden')} " \
               f"{'MF' if c.get('freeze') else 'noMF'} {c.get('shots')}shot seed{c.get('seed')}"
        if self.status != RunStatus.DONE.value:
            return f"{self.run_id} {name}: FAILED: {(self.error or '').splitlines()[0]}"
        accuracies = [r["accuracy"] for r in self.results]
        mean = 100 * sum(accuracies) / len(accuracies) if accuracies else float("nan")
        return f"{self.run_id} {name}: mean accuracy {mean:.1f}% over {len(accuracies)} languages ({self.timings.get('total', 0):.0f} s)"

    @classmethod
    def from_dict(cls, data: dict) -> "RunRecord":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})
