"""The Python API in one object: train a prompt, save and load it, evaluate it, classify new text.

>>> import xlspt
>>> model = xlspt.load_model()                      # the embedded Gemma 3 270M
>>> data = xlspt.TaskData.resolve("../shared/sib200")
>>> clf = xlspt.PromptClassifier.train(model, data, shots=8, prompt=xlspt.PromptConfig(length=4))
>>> clf.evaluate(data, ["fra_Latn", "swh_Latn"])   # DataFrame: language, accuracy, macro_f1, n, protocol
>>> clf.predict(["Le match s'est terminé sur un score nul."])
['sports']
>>> clf.save("runs/my-prompt"); xlspt.PromptClassifier.load("runs/my-prompt")

An ensemble of prompts (one per seed) with a calibration protocol (:mod:`xlspt.calibration`):

>>> ens = xlspt.PromptClassifier.train(model, data, shots=8, ensemble=4)
>>> ens.evaluate(data, ["fra_Latn"], calibration=xlspt.CalibrationConfig("unlabeled"), members=True)
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch

from . import __version__
from .artifact import PromptArtifact
from .data.sampling import FewShotSplit, sample_few_shot
from .data.sib200 import CATEGORIES
from .data.task import TaskData
from .calibration import CalibrationConfig, StateStatistics
from .errors import ConfigError, XlsptError
from .evaluate import Scorer, evaluate_prompts, reference_statistics, score_texts, scored_predictions
from .models.loading import LoadedModel, load_model
from .prompt import PromptConfig, SoftPrompt
from .train import TrainConfig, TrainingDiverged, TrainResult, train_prompt
from .verbalizer import Verbalizer, propose_label_words


def build_verbalizer(
    loaded: LoadedModel, label_words: dict[str, str] | None = None, allow_first_subtoken: bool = False,
    labels: Sequence[str] = CATEGORIES,
) -> Verbalizer:
    """The user's label words for ``labels`` (in class order), checked against the model's tokenizer.

    Classes without a given word get the model family's default for SIB-200's seven topics, and
    for any other label set a single-token word proposed from the label's name.
    """
    labels = tuple(labels)
    words = dict(label_words or {})
    if labels == CATEGORIES:
        words = {**loaded.adapter.label_words, **words}
    elif len(words) < len(labels):
        words = propose_label_words(loaded.tokenizer, labels, words)
    return Verbalizer.build(loaded.tokenizer, words, labels, allow_first_subtoken=allow_first_subtoken)


#: Sidecar entries that belong to one trained prompt; an ensemble keeps them per member.
MEMBER_KEYS = ("prompt_config", "train_config", "data", "best_epoch", "best_val_loss", "history", "train_seconds", "created")


@dataclass
class PromptClassifier:
    """A frozen causal LM, a verbalizer and trained soft prompts ``[n_i, d]``: one, or an ensemble's members.

    An ensemble predicts with the mean of its members' class log-probabilities; scoring all
    members costs one pass over the text.

    Attributes:
        model: the loaded model the prompts belong to.
        verbalizer: label words and their token ids.
        prompts: the ``[n_i, d]`` prompt matrices in embedding-table space.
        metadata: the sidecar content (configs, data sample, training history; per member in ``ensemble``).
        soft_prompts: the trainable modules (with their reparameterization networks), when known.
        calibration: how scores are corrected by default (:mod:`xlspt.calibration`); saved in the sidecar.
        reference: the training language's read-out mean and spread per prompt (``[P, d]``), which
            ``standardize`` moves other languages to; saved with the prompts.
    """

    model: LoadedModel
    verbalizer: Verbalizer
    prompts: list[torch.Tensor]
    metadata: dict = field(default_factory=dict)
    soft_prompts: list[SoftPrompt] | None = None
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    reference: StateStatistics | None = None

    def __post_init__(self) -> None:
        if isinstance(self.prompts, torch.Tensor):
            self.prompts = [self.prompts]
        if isinstance(self.soft_prompts, SoftPrompt):
            self.soft_prompts = [self.soft_prompts]

    @property
    def prompt(self) -> torch.Tensor:
        """The prompt ``[n, d]`` (an ensemble's first member)."""
        return self.prompts[0]

    @property
    def soft_prompt(self) -> SoftPrompt | None:
        return self.soft_prompts[0] if self.soft_prompts else None

    @property
    def size(self) -> int:
        """Number of prompts (1 for a single prompt)."""
        return len(self.prompts)

    @classmethod
    def train(
        cls,
        model: LoadedModel,
        data: TaskData,
        *,
        train_language: str = "eng_Latn",
        shots: int = 8,
        prompt: PromptConfig | None = None,
        training: TrainConfig | None = None,
        label_words: dict[str, str] | None = None,
        allow_first_subtoken: bool = False,
        initial: SoftPrompt | None = None,
        sample_seed: int | None = None,
        ensemble: int | Sequence[int] | None = None,
        shared_sample: bool = False,
        calibration: CalibrationConfig | None = None,
        progress: bool = True,
    ) -> "PromptClassifier":
        """Draw ``shots`` examples per class of ``train_language`` and train a prompt on them.

        ``initial`` continues training from a saved prompt (``PromptArtifact.soft_prompt()``).
        ``sample_seed`` draws the examples (default: the training seed).
        ``ensemble``: train several prompts, one per seed (``N``: the seeds ``training.seed`` to
        ``training.seed + N - 1``; or a list of seeds), each on its own sample drawn with its seed,
        or all on the sample of ``training.seed`` with ``shared_sample``.
        """
        prompt = initial.config if initial is not None else (prompt or PromptConfig())
        training = training or TrainConfig()
        if ensemble is not None and not (isinstance(ensemble, int) and ensemble == 1):
            seeds = list(range(training.seed, training.seed + ensemble)) if isinstance(ensemble, int) else list(ensemble)
            if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
                raise ConfigError("ensemble", f"needs at least one distinct non-negative seed per member (got {ensemble})")
            if initial is not None:
                raise XlsptError("an ensemble trains new prompts: resume its members one at a time")
            members = []
            for i, seed in enumerate(seeds):
                if progress:
                    print(f"ensemble member {i + 1}/{len(seeds)} (seed {seed})", file=sys.stderr, flush=True)
                members.append(cls.train(
                    model, data, train_language=train_language, shots=shots, prompt=prompt,
                    training=dataclasses.replace(training, seed=seed), label_words=label_words,
                    allow_first_subtoken=allow_first_subtoken,
                    sample_seed=training.seed if shared_sample else seed, progress=progress,
                ))
            ensemble = cls.ensemble_of(members, calibration=calibration)
            ensemble.fit_reference(data)
            return ensemble
        verbalizer = build_verbalizer(model, label_words, allow_first_subtoken, data.labels(train_language))
        sample_seed = training.seed if sample_seed is None else sample_seed
        examples = sample_few_shot(data, train_language, shots, sample_seed)
        started = time.time()
        result: TrainResult = train_prompt(
            model, verbalizer, examples, prompt, training, initial=initial, progress=progress
        )
        clf = cls.from_training(
            model, verbalizer, data, examples, result, training, train_language=train_language, shots=shots,
            allow_first_subtoken=allow_first_subtoken, seconds=time.time() - started, sample_seed=sample_seed,
        )
        if calibration is not None:
            clf.calibration = calibration
            clf.fit_reference(data)
        return clf

    @classmethod
    def ensemble_of(
        cls, members: Sequence["PromptClassifier"], *, calibration: CalibrationConfig | None = None
    ) -> "PromptClassifier":
        """One classifier voting with the prompts of ``members`` (same model and label words)."""
        members = list(members)
        if not members:
            raise XlsptError("an ensemble needs at least one prompt")
        first = members[0]
        if len(members) == 1 and first.size == 1:  # one prompt stays a single prompt, not an ensemble of one
            return cls(first.model, first.verbalizer, list(first.prompts), dict(first.metadata), first.soft_prompts,
                       calibration or first.calibration, first.reference)
        for other in members[1:]:
            if other.model is not first.model or other.verbalizer != first.verbalizer:
                raise XlsptError("the prompts of an ensemble need the same model and label words: train them alike")
            if (other.max_length, other.special_tokens) != (first.max_length, first.special_tokens):
                raise XlsptError("the prompts of an ensemble need the same max_length and special_tokens")
        entries = [m.member_entries() for m in members]
        flat = [e for entry in entries for e in entry]
        metadata = {k: v for k, v in first.metadata.items() if k not in (*MEMBER_KEYS, "ensemble", "calibration")}
        metadata.update(flat[0])  # the first member's configs stand for the ensemble in summaries
        seen = {(e.get("data", {}).get("train_language"), i) for e in flat for i in e.get("data", {}).get("train_index_ids", [])}
        samples = {e.get("data", {}).get("sampling_seed") for e in flat}
        metadata["ensemble"] = {
            "size": len(flat),
            "seeds": [e.get("train_config", {}).get("seed") for e in flat],
            "sampling": "shared" if len(samples) == 1 else "per-member",
            "distinct_train_examples": len(seen),
            "members": flat,
        }
        prompts = [p for m in members for p in m.prompts]
        soft = [sp for m in members for sp in (m.soft_prompts or [None] * m.size)]
        reference = stacked_reference(members) if all(m.reference is not None for m in members) else None
        return cls(first.model, first.verbalizer, prompts, metadata,
                   soft if all(sp is not None for sp in soft) else None, calibration or first.calibration, reference)

    def fit_reference(self, data: TaskData, *, force: bool = False, batch_size: int = 32, engine: str = "auto") -> None:
        """Estimate :attr:`reference` on the training language's unlabeled texts (the calibration's
        ``unlabeled_split``) when the calibration standardizes (or ``force``)."""
        if not (self.calibration.standardize or force) or (self.reference is not None and not force):
            return
        language = self.metadata.get("data", {}).get("train_language", "eng_Latn")
        texts = data.split(language, self.calibration.unlabeled_split)["text"].tolist()
        self.reference = reference_statistics(self.model, self.prompts, texts, **self._read_kwargs(batch_size, engine))

    def member_entries(self) -> list[dict]:
        """Each prompt's own sidecar entries (configs, sample, history)."""
        if "ensemble" in self.metadata:
            return [dict(m) for m in self.metadata["ensemble"]["members"]]
        return [{k: self.metadata[k] for k in MEMBER_KEYS if k in self.metadata}]

    def member(self, i: int) -> "PromptClassifier":
        """Member ``i`` of an ensemble as a classifier of its own."""
        metadata = {k: v for k, v in self.metadata.items() if k not in (*MEMBER_KEYS, "ensemble")}
        metadata.update(self.member_entries()[i])
        soft = [self.soft_prompts[i]] if self.soft_prompts else None
        reference = self.reference and StateStatistics(self.reference.mean[i : i + 1], self.reference.std[i : i + 1])
        return PromptClassifier(self.model, self.verbalizer, [self.prompts[i]], metadata, soft, self.calibration, reference)

    @classmethod
    def from_training(
        cls,
        model: LoadedModel,
        verbalizer: Verbalizer,
        data: TaskData,
        examples: FewShotSplit,
        result: TrainResult,
        training: TrainConfig,
        *,
        train_language: str,
        shots: int,
        allow_first_subtoken: bool = False,
        seconds: float = 0.0,
        sample_seed: int | None = None,
    ) -> "PromptClassifier":
        """The classifier of a finished training, with the sidecar metadata that makes it reusable."""
        metadata = {
            "xlspt_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "model": model.name,
            "model_signature": model.signature(),
            "labels": list(verbalizer.labels),
            "label_words": verbalizer.as_dict(),
            "label_token_ids": list(verbalizer.token_ids),
            "dtype": str(model.dtype).removeprefix("torch."),
            "allow_first_subtoken": allow_first_subtoken,
            "prompt_config": result.prompt.config.to_dict(),
            "train_config": training.to_dict(),
            "data": {
                "source": data.description,
                "train_language": train_language,
                "shots_per_class": shots,
                "validation_per_class": len(examples.validation) // len(verbalizer.labels),
                "sampling_seed": training.seed if sample_seed is None else sample_seed,
                "train_index_ids": [int(i) for i in examples.train["index_id"]],
                "validation_index_ids": [int(i) for i in examples.validation["index_id"]],
            },
            "best_epoch": result.best_epoch,
            "best_val_loss": result.best_val_loss,
            "history": result.history,
            "train_seconds": round(seconds, 1),
        }
        return cls(model, verbalizer, [result.prompt.export()], metadata, [result.prompt])

    @classmethod
    def keep_best_before_divergence(
        cls, error: TrainingDiverged, out: str | Path, model: LoadedModel, verbalizer: Verbalizer, data: TaskData,
        examples: FewShotSplit, training: TrainConfig, **kwargs,
    ) -> TrainingDiverged:
        """Save the best prompt of a diverged training (``error.best``, marked ``diverged`` in its sidecar) in
        ``out``, and return the error, its message naming where the prompt is kept.

        Takes the keyword arguments of :meth:`from_training`.
        """
        kept = cls.from_training(model, verbalizer, data, examples, error.best, training, **kwargs)
        kept.metadata["diverged"] = str(error)
        kept.save(out)
        return TrainingDiverged(f"{error}; the best prompt before that (epoch {error.best.best_epoch}, validation loss "
                                f"{error.best.best_val_loss:.3f}) is kept in {out}", error.best)

    @classmethod
    def load(
        cls, path: str | Path, model: LoadedModel | str | None = None, *, dtype: str | None = None,
        device: str | None = None,
    ) -> "PromptClassifier":
        """Load a saved prompt or ensemble.

        Args:
            model: a loaded model, a model name, or ``None`` for the one named in the sidecar.
            dtype: when the model is loaded here: ``None`` for the dtype the prompt was trained in
                (so that evaluation reproduces), or ``"float32"``, ``"bfloat16"``, ``"auto"``.
        """
        artifact = PromptArtifact.load(path)
        if model is None or isinstance(model, str):
            model = load_model(model or artifact.model_name, dtype=dtype or artifact.metadata.get("dtype", "float32"), device=device)
        artifact.check_model(model.signature(), model.name)
        if not artifact.metadata.get("train_config", {}).get("freeze_model", True):
            raise XlsptError(
                "this prompt was trained together with the model's weights (--train-model), which are not saved: "
                "evaluate it in the same `xlspt run`"
            )
        labels = artifact.metadata.get("labels") or list(artifact.metadata["label_words"])
        verbalizer = build_verbalizer(model, artifact.metadata["label_words"], artifact.metadata.get("allow_first_subtoken", False),
                                      labels)
        expected_ids = artifact.metadata.get("label_token_ids")
        if expected_ids is not None and list(verbalizer.token_ids) != list(expected_ids):
            raise XlsptError(
                f"the label words of this prompt map to other tokens in {model.name!r} than at training: "
                f"pass --model {artifact.model_name}"
            )
        prompts = [p.to(device=model.device) for p in artifact.prompts]
        calibration = CalibrationConfig.from_dict(artifact.metadata.get("calibration"))
        return cls(model, verbalizer, prompts, artifact.metadata, artifact.soft_prompts(), calibration, artifact.reference)

    @property
    def max_length(self) -> int:
        return int(self.metadata.get("train_config", {}).get("max_length", TrainConfig().max_length))

    @property
    def special_tokens(self) -> str:
        return str(self.metadata.get("train_config", {}).get("special_tokens", "tokenizer"))

    def _read_kwargs(self, batch_size: int, engine: str) -> dict:
        return dict(batch_size=batch_size, max_length=self.max_length, engine=engine, special_tokens=self.special_tokens)

    def scores(
        self, texts: Sequence[str], *, calibration: CalibrationConfig | None = None,
        unlabeled_texts: Sequence[str] = (), language: str | None = None, batch_size: int = 32, engine: str = "auto",
    ) -> torch.Tensor:
        """``[N, C]`` class log-probabilities (the ensemble's vote), calibrated by ``calibration``
        (default: the classifier's own). ``unlabeled_texts`` serve the ``unlabeled`` protocol;
        ``language`` (e.g. ``ory_Orya``) lets ``content-free`` draw its inputs in the language's script."""
        return score_texts(
            self.model, self.verbalizer, self.prompts, list(texts), calibration=calibration or self.calibration,
            unlabeled_texts=unlabeled_texts, reference=self.reference, language=language,
            **self._read_kwargs(batch_size, engine),
        )

    def predict(
        self, texts: Sequence[str], batch_size: int = 32, engine: str = "auto", *,
        calibration: CalibrationConfig | None = None, unlabeled_texts: Sequence[str] = (), language: str | None = None,
    ) -> list[str]:
        """The predicted class of each text."""
        if not texts:
            return []
        scores = self.scores(texts, calibration=calibration, unlabeled_texts=unlabeled_texts, language=language,
                             batch_size=batch_size, engine=engine)
        return [self.verbalizer.labels[i] for i in scores.argmax(dim=1).tolist()]

    def classify(
        self, texts: Sequence[str], *, top_k: int | None = None, min_confidence: float | None = None,
        calibration: CalibrationConfig | None = None, unlabeled_texts: Sequence[str] = (), language: str | None = None,
        batch_size: int = 32, engine: str = "auto",
    ) -> pd.DataFrame:
        """Scored predictions: columns ``text, label, probability`` (over the label set), and ``top_k``
        (the ``k`` most probable labels with their probabilities) when asked; below
        ``min_confidence`` the label is ``"abstain"``."""
        scores = self.scores(texts, calibration=calibration, unlabeled_texts=unlabeled_texts, language=language,
                             batch_size=batch_size, engine=engine) if texts else torch.zeros(0, len(self.verbalizer.labels))
        return scored_predictions(list(texts), scores, self.verbalizer.labels, top_k=top_k, min_confidence=min_confidence)

    def evaluate(
        self, data: TaskData, languages: Sequence[str], *, batch_size: int = 32, engine: str = "auto",
        calibration: CalibrationConfig | None = None, members: bool = False, progress: bool = True,
    ) -> pd.DataFrame:
        """Accuracy and macro-F1 per language on the test split: columns ``language, accuracy, macro_f1, n, protocol``.

        With ``members`` an ensemble's table gets a ``member`` column: ``ensemble`` for the vote,
        ``0``... for each member alone (same protocol), all from one pass over the text.
        """
        calibration = calibration or self.calibration
        if calibration.standardize and self.reference is None:
            self.fit_reference(data, force=True, batch_size=batch_size, engine=engine)
        scorers = [Scorer(tuple(range(self.size)), calibration)]
        if members and self.size > 1:
            scorers += [Scorer((i,), calibration) for i in range(self.size)]
        tables = evaluate_prompts(
            self.model, self.verbalizer, self.prompts, data, languages, scorers=scorers, reference=self.reference,
            progress=progress, **self._read_kwargs(batch_size, engine),
        )
        if len(tables) == 1:
            return tables[0]
        names = ["ensemble", *[str(i) for i in range(self.size)]]
        return pd.concat([t.assign(member=name) for name, t in zip(names, tables)], ignore_index=True)

    def save_pretrained(self, directory: str | Path, results: pd.DataFrame | None = None) -> Path:
        """:meth:`save` plus a model card (``README.md``: base model, label words, training data,
        protocol and, given ``results``, per-language scores): a folder to share like an adapter."""
        from .files import write_text_atomic
        from .hub import model_card

        path = self.save(directory)
        write_text_atomic(Path(directory) / "README.md", model_card({**self.metadata, "calibration": self.calibration.to_dict()}, results))
        return path

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path, model: LoadedModel | str | None = None, *, hub: str | Path | None = None,
        revision: str | None = None, token: str | None = None, dtype: str | None = None, device: str | None = None,
    ) -> "PromptClassifier":
        """Load a prompt folder, or a Hub repository (``owner/name``) saved with :meth:`save_pretrained`
        and :meth:`push_to_hub`; ``hub`` (or ``$XLSPT_HUB_DIR``) is a local folder standing in for the Hub."""
        from .hub import resolve_pretrained

        return cls.load(resolve_pretrained(name_or_path, hub=hub, revision=revision, token=token), model, dtype=dtype,
                        device=device)

    def push_to_hub(
        self, repo_id: str, *, results: pd.DataFrame | None = None, hub: str | Path | None = None,
        token: str | None = None, private: bool = False,
    ) -> str:
        """Upload the prompt with its model card to the Hub repository ``repo_id`` (created if needed), or to
        ``hub``/``$XLSPT_HUB_DIR``, a local folder laid out like the Hub. Returns the repository's URL or path."""
        import tempfile

        from .hub import push_folder

        with tempfile.TemporaryDirectory(prefix="xlspt-push-") as folder:
            self.save_pretrained(folder, results)
            return push_folder(folder, repo_id, hub=hub, token=token, private=private)

    def save(self, directory: str | Path) -> Path:
        """Write ``prompt.safetensors`` and ``prompt.json`` into ``directory``."""
        metadata = {**self.metadata, "calibration": self.calibration.to_dict()}
        if self.soft_prompts is not None:
            artifact = PromptArtifact.from_soft_prompts(self.soft_prompts, metadata)
        else:
            artifact = PromptArtifact(self.prompts, metadata)
        artifact.reference = self.reference
        return artifact.save(directory)


def stacked_reference(classifiers: Sequence[PromptClassifier]) -> StateStatistics | None:
    """The reference statistics of several classifiers' prompts, in order (``None`` if none has any).

    A classifier without statistics gets placeholder rows: its scorers must not standardize.
    """
    if all(c.reference is None for c in classifiers):
        return None
    width = classifiers[0].prompts[0].shape[1]
    means = [c.reference.mean if c.reference is not None else torch.zeros(c.size, width) for c in classifiers]
    stds = [c.reference.std if c.reference is not None else torch.ones(c.size, width) for c in classifiers]
    return StateStatistics(torch.cat(means), torch.cat(stds))


def choose_label_words(
    model: LoadedModel,
    data: TaskData,
    candidates: Sequence[dict[str, str]],
    *,
    train_language: str = "eng_Latn",
    shots: int = 8,
    prompt: PromptConfig | None = None,
    training: TrainConfig | None = None,
    allow_first_subtoken: bool = False,
    progress: bool = True,
) -> tuple[dict[str, str], pd.DataFrame]:
    """Pick the label words whose prompt classifies the training language's dev split best.

    Each candidate (label -> word, or ``word1|word2`` for several) trains a prompt on the same
    sample with the same seed; the candidates are ranked by accuracy on the whole dev split of
    ``train_language`` (no target language is read). Returns the best candidate and a table
    ``candidate, label_words, dev_accuracy, dev_macro_f1`` (ties go to the earlier candidate).
    """
    from .evaluate import score

    if not candidates:
        raise XlsptError("no label-word candidates to choose from: give at least one")
    dev = data.split(train_language, "dev")
    rows = []
    for i, words in enumerate(candidates):
        if progress:
            print(f"label words {i + 1}/{len(candidates)}: {words}", file=sys.stderr, flush=True)
        clf = PromptClassifier.train(model, data, train_language=train_language, shots=shots, prompt=prompt,
                                     training=training, label_words=words, allow_first_subtoken=allow_first_subtoken,
                                     progress=progress)
        predicted = clf.predict(dev["text"].tolist())
        rows.append({"candidate": i, "label_words": clf.verbalizer.as_dict(),
                     **{f"dev_{k}": v for k, v in score(dev["label"].tolist(), predicted, clf.verbalizer.labels).items()}})
    table = pd.DataFrame(rows)
    best = int(table["dev_accuracy"].idxmax())
    return dict(table.at[best, "label_words"]), table
