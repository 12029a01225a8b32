"""The baseline inside the tool: a logistic-regression probe on the frozen model's read-out state.

The probe reads the final hidden state at the end of ``text + EOS`` (no prompt), the state a
soft prompt's read-out would see without the prompt, and fits a scikit-learn logistic
regression on the same k-shot sample a prompt trains on. Its regularisation strength is
chosen on the sample's validation examples (log-loss; ties go to the stronger
regularisation), like a prompt's best epoch. It is evaluated like a prompt, so a user sees
per language what soft prompts buy over the simplest frozen-feature classifier.

Saved as ``probe.safetensors`` (``coef [C, d]``, ``intercept [C]``, the feature scaler's
``mean [d]`` and ``scale [d]``) and ``probe.json``: no pickle.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from . import __version__
from .data.sampling import sample_few_shot
from .data.task import TaskData
from .engine import DEFAULT_MAX_LENGTH, NaiveEngine, batches_by_length, encode_texts
from .engine.memory import release_freed_memory
from .errors import XlsptError
from .files import write_json_atomic, write_with_atomic
from .models.loading import LoadedModel
from .progress import progress_bar

PROBE_FILE = "probe.safetensors"
PROBE_SIDECAR = "probe.json"
#: Inverse regularisation strengths tried on the validation examples.
C_GRID = (0.01, 0.1, 1.0, 10.0)


@torch.no_grad()
def eos_states(loaded: LoadedModel, texts: Sequence[str], *, max_length: int = DEFAULT_MAX_LENGTH,
               special_tokens: str = "tokenizer", batch_size: int = 32) -> np.ndarray:
    """``[N, d]`` float32 final hidden states at the EOS appended to each text (truncated to ``max_length``)."""
    eos = loaded.tokenizer.eos_token_id
    if eos is None:
        raise XlsptError(f"{loaded.name}'s tokenizer has no EOS token, which the probe reads: use --method prompt")
    ids = [row + [eos] for row in encode_texts(loaded, texts, 0, max_length, special_tokens)]
    engine, empty = NaiveEngine(loaded), torch.zeros(0, loaded.hidden_size)
    out = np.empty((len(texts), loaded.hidden_size), dtype=np.float32)
    for batch in batches_by_length([len(x) for x in ids], batch_size):
        out[batch] = engine.readout_hidden([ids[i] for i in batch], empty).float().cpu().numpy()
    return out


@dataclass
class ProbeClassifier:
    """A linear classifier ``softmax(((h - mean) / scale) @ coef.T + intercept)`` over read-out states ``h [d]``."""

    model: LoadedModel
    labels: tuple[str, ...]
    coef: np.ndarray
    intercept: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    metadata: dict = field(default_factory=dict)

    @property
    def max_length(self) -> int:
        return int(self.metadata.get("max_length", DEFAULT_MAX_LENGTH))

    @property
    def special_tokens(self) -> str:
        return str(self.metadata.get("special_tokens", "tokenizer"))

    @classmethod
    def train(
        cls, model: LoadedModel, data: TaskData, *, train_language: str = "eng_Latn", shots: int = 8, seed: int = 0,
        max_length: int = DEFAULT_MAX_LENGTH, special_tokens: str = "tokenizer", features=None,
    ) -> "ProbeClassifier":
        """Fit on ``shots`` examples per class of ``train_language`` (the sample a prompt with ``seed`` draws).

        ``features``: a function ``texts -> [N, d]`` to use instead of :func:`eos_states` (a cache).
        """
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import log_loss
        from sklearn.preprocessing import StandardScaler

        started = time.time()
        labels = data.labels(train_language)
        examples = sample_few_shot(data, train_language, shots, seed)
        read = features or (lambda texts: eos_states(model, texts, max_length=max_length, special_tokens=special_tokens))
        x_train, x_val = read(examples.train["text"].tolist()), read(examples.validation["text"].tolist())
        y_train = [labels.index(y) for y in examples.train["label"]]
        y_val = [labels.index(y) for y in examples.validation["label"]]
        scaler = StandardScaler().fit(x_train)
        losses = {}
        for c in C_GRID:
            fitted = LogisticRegression(C=c, max_iter=5000, random_state=seed).fit(scaler.transform(x_train), y_train)
            losses[c] = log_loss(y_val, fitted.predict_proba(scaler.transform(x_val)), labels=list(range(len(labels))))
        best = min(C_GRID, key=lambda c: (round(losses[c], 9), c))
        fitted = LogisticRegression(C=best, max_iter=5000, random_state=seed).fit(scaler.transform(x_train), y_train)
        coef, intercept = fitted.coef_, fitted.intercept_
        if len(labels) == 2:  # scikit-learn keeps one row for two classes: make it two logits
            coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
        metadata = {
            "xlspt_version": __version__, "method": "probe", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "model": model.name, "model_signature": model.signature(), "dtype": str(model.dtype).removeprefix("torch."),
            "labels": list(labels), "C": best, "validation_log_loss": {str(c): round(v, 6) for c, v in losses.items()},
            "max_length": max_length, "special_tokens": special_tokens,
            "data": {"source": data.description, "train_language": train_language, "shots_per_class": shots,
                     "sampling_seed": seed, "train_index_ids": [int(i) for i in examples.train["index_id"]],
                     "validation_index_ids": [int(i) for i in examples.validation["index_id"]]},
            "train_seconds": round(time.time() - started, 1),
        }
        return cls(model, tuple(labels), coef.astype(np.float32), intercept.astype(np.float32),
                   scaler.mean_.astype(np.float32), scaler.scale_.astype(np.float32), metadata)

    def scores_of(self, states: np.ndarray) -> torch.Tensor:
        """``[N, d]`` read-out states -> ``[N, C]`` class log-probabilities."""
        logits = ((states - self.mean) / self.scale) @ self.coef.T + self.intercept
        return torch.log_softmax(torch.from_numpy(np.asarray(logits, dtype=np.float32)), dim=1)

    def scores(self, texts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
        return self.scores_of(eos_states(self.model, texts, max_length=self.max_length,
                                         special_tokens=self.special_tokens, batch_size=batch_size))

    def predict(self, texts: Sequence[str]) -> list[str]:
        return [self.labels[i] for i in self.scores(texts).argmax(dim=1).tolist()] if texts else []

    def evaluate(self, data: TaskData, languages: Sequence[str], *, split: str = "test", progress: bool = True) -> pd.DataFrame:
        """Accuracy and macro-F1 per language, as :meth:`PromptClassifier.evaluate` gives them."""
        return evaluate_probes([self], data, languages, split=split, progress=progress)[0]

    def save(self, directory: str | Path) -> Path:
        from safetensors.numpy import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        # safetensors writes the raw buffer: a Fortran-ordered array (scikit-learn's coef_) would come back transposed
        tensors = {k: np.ascontiguousarray(v, dtype=np.float32)
                   for k, v in {"coef": self.coef, "intercept": self.intercept, "mean": self.mean, "scale": self.scale}.items()}
        write_with_atomic(directory / PROBE_FILE, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "xlspt-probe"}))
        write_json_atomic(directory / PROBE_SIDECAR, self.metadata)
        return directory / PROBE_FILE

    @classmethod
    def load(cls, directory: str | Path, model: LoadedModel) -> "ProbeClassifier":
        from safetensors.numpy import load_file

        directory = Path(directory)
        try:
            tensors = load_file(str(directory / PROBE_FILE))
            metadata = json.loads((directory / PROBE_SIDECAR).read_text(encoding="utf-8"))
        except Exception as exc:  # missing, truncated or foreign files: one line
            raise XlsptError(f"{directory} holds no readable probe ({exc.__class__.__name__}): train it again with --method probe") from None
        if metadata.get("model_signature") != model.signature():
            raise XlsptError(f"the probe in {directory} was fitted on {metadata.get('model')!r}: load that model")
        return cls(model, tuple(metadata["labels"]), tensors["coef"], tensors["intercept"], tensors["mean"],
                   tensors["scale"], metadata)


def evaluate_probes(
    probes: Sequence[ProbeClassifier], data: TaskData, languages: Sequence[str], *, split: str = "test",
    batch_size: int = 32, progress: bool = True,
) -> list[pd.DataFrame]:
    """Per-language results of several probes on one model, reading each language's text once."""
    from .evaluate import language_result, results_table

    first = probes[0]
    if any((p.max_length, p.special_tokens) != (first.max_length, first.special_tokens) for p in probes):
        raise XlsptError("these probes read text differently (max_length, special_tokens): evaluate them one at a time")
    collected = [([], [], {}) for _ in probes]
    for lang in progress_bar(languages, desc="evaluating probes", unit="lang", disable=not progress):
        frame = data.split(lang, split)
        states = eos_states(first.model, frame["text"].tolist(), max_length=first.max_length,
                            special_tokens=first.special_tokens, batch_size=batch_size)
        for j, probe in enumerate(probes):
            predicted = [probe.labels[i] for i in probe.scores_of(states).argmax(dim=1).tolist()]
            row, classes, matrix = language_result(lang, frame["label"].tolist(), predicted, probe.labels, "zero-shot")
            collected[j][0].append(row)
            collected[j][1].extend(classes)
            collected[j][2][lang] = matrix
        del states
        release_freed_memory()  # as evaluate_prompts does: each language's batches have new sizes
    return [results_table(first.model, probe.labels, *parts) for probe, parts in zip(probes, collected)]
