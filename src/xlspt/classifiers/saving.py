"""Saving, loading and sharing a prompt classifier: its folder (weights, typed sidecar), a model card beside it,
and the Hub (or a local folder laid out like it), in the manner of PEFT's ``save_pretrained``/``from_pretrained``/
``push_to_hub``. A mixin of :class:`~xlspt.classifiers.PromptClassifier` (and so of the LoRA classifier)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Self

import pandas as pd

from ..artifact import PromptArtifact
from ..errors import XlsptError
from ..models.loading import LoadedModel, load_model
from ..sidecar import PromptSidecar
from ..verbalizer import build_verbalizer
from .base import classifier_class, saved_method


class SavedAsFolder:
    """``save``/``load`` a folder, ``save_pretrained``/``from_pretrained``/``push_to_hub`` to share it."""

    @classmethod
    def load(
        cls, path: str | Path, model: LoadedModel | str | None = None, *, dtype: str | None = None,
        device: str | None = None,
    ) -> Self:
        """Load a saved prompt or ensemble.

        Args:
            model: a loaded model, a model name, or ``None`` for the one named in the sidecar.
            dtype: when the model is loaded here: ``None`` for the dtype the prompt was trained in
                (so that evaluation reproduces), or ``"float32"``, ``"bfloat16"``, ``"auto"``.
        """
        artifact = PromptArtifact.load(path, cls.sidecar_kind)
        meta = artifact.metadata
        if model is None or isinstance(model, str):
            model = load_model(model or meta.model, dtype=dtype or meta.dtype, device=device)
        artifact.check_model(model.signature(), model.name)
        if not meta.training.train_config.freeze_model:
            raise XlsptError(
                "this prompt was trained together with the model's weights (--train-model), which are not saved: "
                "evaluate it in the same `xlspt run`"
            )
        verbalizer = build_verbalizer(model, meta.label_words, meta.allow_first_subtoken, meta.labels)
        if meta.label_token_ids is not None and list(verbalizer.token_ids) != list(meta.label_token_ids):
            raise XlsptError(
                f"the label words of this prompt map to other tokens in {model.name!r} than at training: "
                f"pass --model {artifact.model_name}"
            )
        prompts = [p.to(device=model.device) for p in artifact.prompts]
        return cls(model, verbalizer, prompts, meta, artifact.soft_prompts(), meta.calibration, artifact.reference)

    @classmethod
    def load_sidecar(cls, path: str | Path) -> PromptSidecar:
        """The sidecar of the prompt saved at ``path`` (checked with its prompt file, which it describes)."""
        return PromptArtifact.load(path, cls.sidecar_kind).metadata

    def save(self, directory: str | Path) -> Path:
        """Write ``prompt.safetensors`` and ``prompt.json`` into ``directory``."""
        self.metadata.calibration = self.calibration
        if self.soft_prompts is not None:
            artifact = PromptArtifact.from_soft_prompts(self.soft_prompts, self.metadata, prompts=self.prompts)
        else:
            artifact = PromptArtifact(self.prompts, self.metadata)
        artifact.reference = self.reference
        return artifact.save(directory)

    def sidecar_dict(self) -> dict:
        """The sidecar as it is written (with the current calibration): what summaries and model cards read."""
        return dataclasses.replace(self.metadata, calibration=self.calibration).to_dict()

    def save_pretrained(self, directory: str | Path, results: pd.DataFrame | None = None) -> Path:
        """:meth:`save` plus a model card (``README.md``: base model, label words, training data,
        protocol and, given ``results``, per-language scores): a folder to share like an adapter."""
        from ..card import write_model_card

        path = self.save(directory)
        write_model_card(directory, self.sidecar_dict(), results)
        return path

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path, model: LoadedModel | str | None = None, *, hub: str | Path | None = None,
        revision: str | None = None, token: str | None = None, dtype: str | None = None, device: str | None = None,
    ) -> Self:
        """Load a prompt folder, or a Hub repository (``owner/name``) saved with :meth:`save_pretrained`
        and :meth:`push_to_hub`; ``hub`` (or ``$XLSPT_HUB_DIR``) is a local folder standing in for the Hub."""
        from ..hub import resolve_pretrained

        folder = resolve_pretrained(name_or_path, hub=hub, revision=revision, token=token)
        saved = classifier_class(saved_method(folder)) if Path(folder).is_dir() else cls
        loads_as = saved if issubclass(saved, cls) else cls  # prompts with adapters load with them
        return loads_as.load(folder, model, dtype=dtype, device=device)

    def push_to_hub(
        self, repo_id: str, *, results: pd.DataFrame | None = None, hub: str | Path | None = None,
        token: str | None = None, private: bool = False,
    ) -> str:
        """Upload the prompt with its model card to the Hub repository ``repo_id`` (created if needed), or to
        ``hub``/``$XLSPT_HUB_DIR``, a local folder laid out like the Hub. Returns the repository's URL or path.
        What is uploaded holds no local path (:func:`~xlspt.hub.stage_shareable`), as with ``xlspt push``."""
        import tempfile

        from ..hub import push_folder, stage_shareable

        with tempfile.TemporaryDirectory(prefix="xlspt-push-") as folder:
            self.save(Path(folder) / "saved")
            stage_shareable(Path(folder) / "saved", Path(folder) / "shared", repo_id=repo_id, results=results)
            return push_folder(Path(folder) / "shared", repo_id, hub=hub, token=token, private=private)
