"""The baseline inside the tool: a logistic-regression probe on the frozen model's read-out state.

The probe reads the final hidden state at the end of ``text + EOS`` (no prompt), the state a
soft prompt's read-out would see without the prompt, and fits a scikit-learn logistic
regression on the same k-shot sample a prompt trains on. Its regularisation strength is
chosen on the sample's validation examples (log-loss; ties go to the stronger
regularisation), like a prompt's best epoch. It is evaluated like a prompt, so a user sees
per language what soft prompts buy over the simplest frozen-feature classifier.

Saved as ``probe.safetensors`` (``coef [C, d]``, ``intercept [C]``, the feature scaler's
``mean [d]`` and ``scale [d]``) and ``probe.json`` (a :class:`~xlspt.sidecar.ProbeSidecar`): no pickle.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..data.sampling import sample_few_shot
from ..data.task import TaskData
from ..engine.options import ReadoutConfig
from ..calibration import CalibrationConfig, Protocol
from ..errors import ConfigError, XlsptError
from ..files import write_with_atomic
from ..layout import PROBE_FILE, PROBE_SIDECAR
from ..models.loading import LoadedModel, load_model
from ..probe_readout import eos_states
from ..sidecar import ProbeSidecar, Sample
from .base import FitRequest, Method, ReadsLikeItsSidecar, register
from .scoring import PassOptions, ScoreRequest, ScoresInBatches, passes

logger = logging.getLogger(__name__)

#: Inverse regularisation strengths tried on the validation examples.
C_GRID = (0.01, 0.1, 1.0, 10.0)


def _fit(x_train, y_train, x_val, y_val, n_labels: int, seed: int):
    """The scaler and the logistic regression of the best C (by validation log-loss), and every C's loss."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    losses = {}
    for c in C_GRID:
        fitted = LogisticRegression(C=c, max_iter=5000, random_state=seed).fit(scaler.transform(x_train), y_train)
        losses[c] = log_loss(y_val, fitted.predict_proba(scaler.transform(x_val)), labels=list(range(n_labels)))
    best = min(C_GRID, key=lambda c: (round(losses[c], 9), c))
    fitted = LogisticRegression(C=best, max_iter=5000, random_state=seed).fit(scaler.transform(x_train), y_train)
    return scaler, fitted, best, losses


@register(Method.PROBE)
@dataclass
class ProbeClassifier(ScoresInBatches, ReadsLikeItsSidecar):
    """A linear classifier ``softmax(((h - mean) / scale) @ coef.T + intercept)`` over read-out states ``h [d]``."""

    model: LoadedModel
    labels: tuple[str, ...]
    coef: np.ndarray
    intercept: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    metadata: ProbeSidecar = field(default_factory=ProbeSidecar)
    fit_seconds: float = field(default=0.0, compare=False, repr=False)  # how long fitting took, for run records

    size = 1
    #: the probe is scored as it is: zero-shot, and it refuses any other calibration
    calibration = CalibrationConfig()
    takes_calibration = False
    evaluation_desc = "evaluating probes"

    @property
    def trainable_parameters(self) -> int:
        return int(self.coef.size + self.intercept.size)

    @property
    def stored_parameters(self) -> int:
        return int(self.coef.size + self.intercept.size + self.mean.size + self.scale.size)

    @classmethod
    def train(
        cls, model: LoadedModel, data: TaskData, *, train_language: str = "eng_Latn", shots: int = 8, seed: int = 0,
        max_length: int | None = None, special_tokens: str = "tokenizer", features=None,
    ) -> "ProbeClassifier":
        """Fit on ``shots`` examples per class of ``train_language`` (the sample a prompt with ``seed`` draws).

        ``features``: a function ``texts -> [N, d]`` to use instead of :func:`~xlspt.probe_readout.eos_states` (a cache).
        """
        import sklearn.linear_model  # noqa: F401 - imported before the clock starts: train_seconds times the fit only

        started = time.time()
        readout = ReadoutConfig(**({"max_length": max_length} if max_length is not None else {}), special_tokens=special_tokens)
        labels = data.labels(train_language)
        examples = sample_few_shot(data, train_language, shots, seed)
        read = features or (lambda texts: eos_states(model, texts, max_length=readout.max_length,
                                                     special_tokens=readout.special_tokens.value))
        x_train, x_val = read(examples.train["text"].tolist()), read(examples.validation["text"].tolist())
        scaler, fitted, best, losses = _fit(x_train, [labels.index(y) for y in examples.train["label"]], x_val,
                                            [labels.index(y) for y in examples.validation["label"]], len(labels), seed)
        coef, intercept = fitted.coef_, fitted.intercept_
        if len(labels) == 2:  # scikit-learn keeps one row for two classes: make it two logits
            coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
        sample = Sample.drawn_from(data, train_language, shots_per_class=shots, sampling_seed=seed,
                                   train_index_ids=[int(i) for i in examples.train["index_id"]],
                                   validation_index_ids=[int(i) for i in examples.validation["index_id"]])
        metadata = ProbeSidecar(model=model.name, model_signature=model.signature(), labels=list(labels),
                                dtype=str(model.dtype).removeprefix("torch."), readout=readout, data=sample,
                                C=best, validation_log_loss={str(c): round(v, 6) for c, v in losses.items()},
                                train_seconds=round(time.time() - started, 1))
        return cls(model, tuple(labels), coef.astype(np.float32), intercept.astype(np.float32),
                   scaler.mean_.astype(np.float32), scaler.scale_.astype(np.float32), metadata,
                   fit_seconds=time.time() - started)

    @classmethod
    def fit_many(
        cls, model: LoadedModel, data: TaskData, requests: Sequence[FitRequest], *, progress: bool = True,
        raise_errors: bool = True, desc: str | None = None,
    ) -> list["ProbeClassifier | BaseException"]:
        """Fit one probe per request; the read-out states of texts that several samples share are computed once
        per way of reading text (``desc`` is unused: fitting a probe shows no bar)."""
        seen: dict[tuple, np.ndarray] = {}

        def features(readout: ReadoutConfig):
            def read(texts):
                missing = [t for t in dict.fromkeys(texts) if (readout, t) not in seen]
                if missing:
                    states = eos_states(model, missing, max_length=readout.max_length,
                                        special_tokens=readout.special_tokens.value)
                    seen.update(((readout, t), s) for t, s in zip(missing, states))
                return np.stack([seen[(readout, t)] for t in texts])
            return read

        out: list[ProbeClassifier | BaseException] = []
        for request in requests:
            logger.info(f"fitting the probe baseline ({request.name}) on {request.shots} examples per class of {request.train_language}")
            try:
                out.append(cls.train(model, data, train_language=request.train_language, shots=request.shots,
                                     seed=request.seed, max_length=request.readout.max_length,
                                     special_tokens=request.readout.special_tokens.value,
                                     features=features(request.readout)))
            except Exception as exc:
                if raise_errors:
                    raise
                out.append(exc)
        return out

    @classmethod
    def check_request(cls, request: FitRequest) -> None:
        if request.ensemble > 1 or request.calibration.protocol is not Protocol.ZERO_SHOT or request.changes_model:
            raise ConfigError("method", "probe is the plain baseline: use it without ensemble, calibration or --no-freeze")

    def record_entries(self) -> dict:
        return {"best_epoch": None, "best_val_loss": None, "history": [], "protocol": "zero-shot",
                "notes": [f"probe baseline: logistic regression with C={self.metadata.C} (chosen on the validation examples)"]}

    def scores_of(self, states: np.ndarray) -> torch.Tensor:
        """``[N, d]`` read-out states -> ``[N, C]`` class log-probabilities."""
        logits = ((states - self.mean) / self.scale) @ self.coef.T + self.intercept
        return torch.log_softmax(torch.from_numpy(np.asarray(logits, dtype=np.float32)), dim=1)

    @classmethod
    def score_requests(cls, requests: Sequence[ScoreRequest], options: PassOptions = PassOptions()) -> list[torch.Tensor]:
        """``[N_i, C]`` class log-probabilities of each request; probes that read text alike read each distinct text's
        state once. The probe takes no calibration: a request that asks for one is refused."""
        for request in requests:
            if (request.calibration is not None and request.calibration.protocol is not Protocol.ZERO_SHOT) or request.unlabeled:
                raise XlsptError("the probe baseline takes no calibration: drop --calibration and --unlabeled")
        out: list[torch.Tensor | None] = [None] * len(requests)
        reads_alike = lambda clf: (id(clf.model), clf.max_length, clf.special_tokens)  # noqa: E731
        for indices, classifiers, rows in passes(requests, reads_alike):
            first = classifiers[0]
            states = eos_states(first.model, rows.texts, max_length=first.max_length, special_tokens=first.special_tokens,
                                batch_size=options.batch_size or first.readout.batch_size)
            for i in indices:
                out[i] = requests[i].classifier.scores_of(states[rows.of(requests[i].texts).numpy()])
        return out  # type: ignore[return-value]

    def protocol_label(self, calibration: CalibrationConfig | None = None) -> str:
        return "probe baseline"

    @classmethod
    def pass_engine(cls, classifiers, engine=None) -> str:
        return "naive"  # the state at the text's own end: a full pass, no prompt to cache the text for

    @classmethod
    def scoring_line(cls, classifiers, languages) -> str:
        return f"scoring {len(classifiers)} probe(s) on {len(languages)} languages"

    def sidecar_dict(self) -> dict:
        return self.metadata.to_dict()

    @staticmethod
    def load_sidecar(path: str | Path) -> ProbeSidecar:
        """The sidecar of the probe saved in the folder ``path``."""
        path = Path(path)
        if not (path / PROBE_SIDECAR).is_file():
            raise XlsptError(f"{path} holds no readable probe (no {PROBE_SIDECAR}): train it again with --method probe")
        return ProbeSidecar.read(path / PROBE_SIDECAR)

    def fit_summary(self) -> str:
        return f"fitted the probe baseline in {self.metadata.train_seconds:.0f} s (C={self.metadata.C})"

    def save(self, directory: str | Path) -> Path:
        from safetensors.numpy import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        # safetensors writes the raw buffer: a Fortran-ordered array (scikit-learn's coef_) would come back transposed
        tensors = {k: np.ascontiguousarray(v, dtype=np.float32)
                   for k, v in {"coef": self.coef, "intercept": self.intercept, "mean": self.mean, "scale": self.scale}.items()}
        write_with_atomic(directory / PROBE_FILE, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "xlspt-probe"}))
        self.metadata.write(directory)
        return directory / PROBE_FILE

    @classmethod
    def load(cls, directory: str | Path, model: LoadedModel | str | None = None, *, dtype: str | None = None,
             device: str | None = None) -> "ProbeClassifier":
        from safetensors.numpy import load_file

        directory = Path(directory)
        try:
            tensors = load_file(str(directory / PROBE_FILE))
        except Exception as exc:  # missing, truncated or foreign files: one line
            raise XlsptError(f"{directory} holds no readable probe ({exc.__class__.__name__}): train it again with --method probe") from None
        if not (directory / PROBE_SIDECAR).is_file():
            raise XlsptError(f"{directory} holds no readable probe (FileNotFoundError): train it again with --method probe")
        metadata = ProbeSidecar.read(directory / PROBE_SIDECAR)
        metadata.check_weights(directory)
        if model is None or isinstance(model, str):
            model = load_model(model or metadata.model, dtype=dtype or metadata.dtype, device=device)
        if metadata.model_signature != model.signature():
            raise XlsptError(f"the probe in {directory} was fitted on {metadata.model!r}: load that model")
        return cls(model, tuple(metadata.labels), tensors["coef"], tensors["intercept"], tensors["mean"],
                   tensors["scale"], metadata)
