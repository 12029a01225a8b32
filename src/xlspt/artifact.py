"""Prompt files: ``prompt.safetensors`` plus a JSON sidecar with everything needed to reuse it.

``prompt.safetensors`` holds ``prompt`` (the final ``[n, d]`` matrix, float32) and, for a
reparameterized prompt, ``reparam.input`` (``P``) and the network as ``reparam.net.*`` so
that training can resume. ``prompt.json`` names the model and its shape signature, the
verbalizer, the prompt and training configs, the data sample and the package version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import XlsptError
from .files import write_json_atomic, write_with_atomic
from .prompt import PromptConfig, SoftPrompt

PROMPT_FILE = "prompt.safetensors"
SIDECAR_FILE = "prompt.json"
FORMAT_VERSION = 1


@dataclass
class PromptArtifact:
    """A trained prompt matrix ``[n, d]`` and its metadata (the sidecar's content)."""

    prompt: torch.Tensor
    metadata: dict
    extra_tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def from_soft_prompt(cls, soft_prompt: SoftPrompt, metadata: dict) -> "PromptArtifact":
        extra = {}
        if soft_prompt.reparam is not None:
            extra["reparam.input"] = soft_prompt.weight.detach().float().cpu().contiguous()
            for key, value in soft_prompt.reparam.state_dict().items():
                extra[f"reparam.net.{key}"] = value.detach().float().cpu().contiguous()
        return cls(prompt=soft_prompt.export().float().cpu().contiguous(), metadata=metadata, extra_tensors=extra)

    def save(self, directory: str | Path) -> Path:
        """Write ``prompt.safetensors`` and ``prompt.json`` into ``directory`` (each atomically)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {"prompt": self.prompt.float().cpu().contiguous(), **self.extra_tensors}
        write_with_atomic(directory / PROMPT_FILE, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "xlspt"}))
        write_json_atomic(directory / SIDECAR_FILE, {"format_version": FORMAT_VERSION, **self.metadata})
        return directory / PROMPT_FILE

    @classmethod
    def load(cls, path: str | Path) -> "PromptArtifact":
        """Read a prompt from a run directory or a ``.safetensors`` file with its ``.json`` sidecar."""
        path = Path(path).expanduser()
        if path.is_dir():
            tensor_path, sidecar_path = path / PROMPT_FILE, path / SIDECAR_FILE
        else:
            tensor_path, sidecar_path = path, path.with_suffix(".json")
        if not tensor_path.is_file():
            raise XlsptError(f"no prompt at {str(tensor_path)!r}: pass a run directory (--out of `xlspt train`) or a .safetensors file")
        if not sidecar_path.is_file():
            raise XlsptError(f"prompt {tensor_path} has no sidecar {sidecar_path.name}: keep both files of a trained prompt together")
        try:
            tensors = load_file(str(tensor_path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise XlsptError(f"{tensor_path} is not a readable safetensors file ({exc}): re-train or restore it") from None
        try:
            metadata = json.loads(sidecar_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise XlsptError(f"{sidecar_path} is not valid JSON ({exc}): re-train or restore it") from None
        if "prompt" not in tensors or tensors["prompt"].ndim != 2:
            raise XlsptError(f"{tensor_path} holds no [n, d] tensor named 'prompt': it is not an xlspt prompt file")
        for key in ("model", "model_signature", "label_words", "prompt_config"):
            if key not in metadata:
                raise XlsptError(f"{sidecar_path} lacks {key!r}: it is not an xlspt prompt sidecar")
        prompt = tensors.pop("prompt")
        return cls(prompt=prompt, metadata=metadata, extra_tensors=tensors)

    @property
    def model_name(self) -> str:
        return str(self.metadata["model"])

    @property
    def prompt_config(self) -> PromptConfig:
        return PromptConfig(**self.metadata["prompt_config"])

    def check_model(self, signature: dict, model_name: str) -> None:
        """Refuse a model whose shape differs from the one the prompt was trained with."""
        expected = self.metadata["model_signature"]
        if int(self.prompt.shape[1]) != int(signature["hidden_size"]) or any(
            expected.get(k) != signature.get(k) for k in ("model_type", "hidden_size", "vocab_size")
        ):
            raise XlsptError(
                f"this prompt was made for {self.model_name!r} ({expected.get('model_type')}, hidden size "
                f"{expected.get('hidden_size')}), not {model_name!r} ({signature.get('model_type')}, hidden size "
                f"{signature.get('hidden_size')}): pass --model {self.model_name} or a prompt trained for this model"
            )

    def soft_prompt(self) -> SoftPrompt:
        """Rebuild the trainable module (with its network, if reparameterized) to resume training."""
        config = self.prompt_config
        module = SoftPrompt(config, int(self.prompt.shape[1]))
        with torch.no_grad():
            if config.reparam_hidden is None:
                module.weight.copy_(self.prompt)
            else:
                module.weight.copy_(self.extra_tensors["reparam.input"])
                net = {k[len("reparam.net.") :]: v for k, v in self.extra_tensors.items() if k.startswith("reparam.net.")}
                module.reparam.load_state_dict(net)
        return module
