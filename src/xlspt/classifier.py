"""The Python API in one object: train a prompt, save and load it, evaluate it, classify new text.

>>> import xlspt
>>> model = xlspt.load_model()                      # the embedded Gemma 3 270M
>>> data = xlspt.Sib200.resolve("../shared/sib200")
>>> clf = xlspt.PromptClassifier.train(model, data, shots=8, prompt=xlspt.PromptConfig(length=4))
>>> clf.evaluate(data, ["fra_Latn", "swh_Latn"])   # DataFrame: language, accuracy, macro_f1, n
>>> clf.predict(["Le match s'est terminé sur un score nul."])
['sports']
>>> clf.save("runs/my-prompt"); xlspt.PromptClassifier.load("runs/my-prompt")
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch

from . import __version__
from .artifact import PromptArtifact
from .data.sampling import FewShotSplit, sample_few_shot
from .data.sib200 import CATEGORIES, Sib200
from .errors import XlsptError
from .evaluate import evaluate_languages, predict
from .models.loading import LoadedModel, load_model
from .prompt import PromptConfig, SoftPrompt
from .train import TrainConfig, TrainResult, train_prompt
from .verbalizer import Verbalizer


def build_verbalizer(
    loaded: LoadedModel, label_words: dict[str, str] | None = None, allow_first_subtoken: bool = False
) -> Verbalizer:
    """The user's label words, or the defaults of the model's family, checked against its tokenizer."""
    words = label_words or loaded.adapter.label_words
    return Verbalizer.build(loaded.tokenizer, words, CATEGORIES, allow_first_subtoken=allow_first_subtoken)


@dataclass
class PromptClassifier:
    """A frozen causal LM, a verbalizer and a trained soft prompt ``[n, d]``.

    Attributes:
        model: the loaded model the prompt belongs to.
        verbalizer: label words and their token ids.
        prompt: ``[n, d]`` prompt matrix in embedding-table space.
        metadata: the sidecar content (configs, data sample, training history).
        soft_prompt: the trainable module (with its reparameterization network), when known.
    """

    model: LoadedModel
    verbalizer: Verbalizer
    prompt: torch.Tensor
    metadata: dict = field(default_factory=dict)
    soft_prompt: SoftPrompt | None = None

    @classmethod
    def train(
        cls,
        model: LoadedModel,
        data: Sib200,
        *,
        train_language: str = "eng_Latn",
        shots: int = 8,
        prompt: PromptConfig | None = None,
        training: TrainConfig | None = None,
        label_words: dict[str, str] | None = None,
        allow_first_subtoken: bool = False,
        initial: SoftPrompt | None = None,
        progress: bool = True,
    ) -> "PromptClassifier":
        """Draw ``shots`` examples per class of ``train_language`` and train a prompt on them.

        ``initial`` continues training from a saved prompt (``PromptArtifact.soft_prompt()``).
        """
        prompt = initial.config if initial is not None else (prompt or PromptConfig())
        training = training or TrainConfig()
        verbalizer = build_verbalizer(model, label_words, allow_first_subtoken)
        examples = sample_few_shot(data, train_language, shots, training.seed)
        started = time.time()
        result: TrainResult = train_prompt(
            model, verbalizer, examples, prompt, training, initial=initial, progress=progress
        )
        return cls.from_training(
            model, verbalizer, data, examples, result, training, train_language=train_language, shots=shots,
            allow_first_subtoken=allow_first_subtoken, seconds=time.time() - started,
        )

    @classmethod
    def from_training(
        cls,
        model: LoadedModel,
        verbalizer: Verbalizer,
        data: Sib200,
        examples: FewShotSplit,
        result: TrainResult,
        training: TrainConfig,
        *,
        train_language: str,
        shots: int,
        allow_first_subtoken: bool = False,
        seconds: float = 0.0,
    ) -> "PromptClassifier":
        """The classifier of a finished training, with the sidecar metadata that makes it reusable."""
        metadata = {
            "xlspt_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "model": model.name,
            "model_signature": model.signature(),
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
                "validation_per_class": len(examples.validation) // len(CATEGORIES),
                "sampling_seed": training.seed,
                "train_index_ids": [int(i) for i in examples.train["index_id"]],
                "validation_index_ids": [int(i) for i in examples.validation["index_id"]],
            },
            "best_epoch": result.best_epoch,
            "best_val_loss": result.best_val_loss,
            "history": result.history,
            "train_seconds": round(seconds, 1),
        }
        return cls(model, verbalizer, result.prompt.export(), metadata, result.prompt)

    @classmethod
    def load(
        cls, path: str | Path, model: LoadedModel | str | None = None, *, dtype: str | None = None
    ) -> "PromptClassifier":
        """Load a saved prompt.

        Args:
            model: a loaded model, a model name, or ``None`` for the one named in the sidecar.
            dtype: when the model is loaded here: ``None`` for the dtype the prompt was trained in
                (so that evaluation reproduces), or ``"float32"``, ``"bfloat16"``, ``"auto"``.
        """
        artifact = PromptArtifact.load(path)
        if model is None or isinstance(model, str):
            model = load_model(model or artifact.model_name, dtype=dtype or artifact.metadata.get("dtype", "float32"))
        artifact.check_model(model.signature(), model.name)
        if not artifact.metadata.get("train_config", {}).get("freeze_model", True):
            raise XlsptError(
                "this prompt was trained together with the model's weights (--train-model), which are not saved: "
                "evaluate it in the same `xlspt run`"
            )
        verbalizer = build_verbalizer(model, artifact.metadata["label_words"], artifact.metadata.get("allow_first_subtoken", False))
        expected_ids = artifact.metadata.get("label_token_ids")
        if expected_ids is not None and list(verbalizer.token_ids) != list(expected_ids):
            raise XlsptError(
                f"the label words of this prompt map to other tokens in {model.name!r} than at training: "
                f"pass --model {artifact.model_name}"
            )
        prompt = artifact.prompt.to(device=model.device)
        return cls(model, verbalizer, prompt, artifact.metadata, artifact.soft_prompt())

    @property
    def max_length(self) -> int:
        return int(self.metadata.get("train_config", {}).get("max_length", TrainConfig().max_length))

    @property
    def special_tokens(self) -> str:
        return str(self.metadata.get("train_config", {}).get("special_tokens", "tokenizer"))

    def predict(self, texts: Sequence[str], batch_size: int = 32, engine: str = "auto") -> list[str]:
        """The predicted SIB-200 topic of each text."""
        return predict(
            self.model, self.verbalizer, self.prompt, list(texts),
            batch_size=batch_size, max_length=self.max_length, engine=engine, special_tokens=self.special_tokens,
        )

    def evaluate(
        self, data: Sib200, languages: Sequence[str], *, batch_size: int = 32, engine: str = "auto",
        progress: bool = True,
    ) -> pd.DataFrame:
        """Accuracy and macro-F1 per language on the test split: columns ``language, accuracy, macro_f1, n``."""
        return evaluate_languages(
            self.model, self.verbalizer, self.prompt, data, languages,
            batch_size=batch_size, max_length=self.max_length, engine=engine, progress=progress,
            special_tokens=self.special_tokens,
        )

    def save(self, directory: str | Path) -> Path:
        """Write ``prompt.safetensors`` and ``prompt.json`` into ``directory``."""
        if self.soft_prompt is not None:
            artifact = PromptArtifact.from_soft_prompt(self.soft_prompt, self.metadata)
        else:
            artifact = PromptArtifact(self.prompt, self.metadata)
        return artifact.save(directory)
