"""Prompt files: ``prompt.safetensors`` plus a JSON sidecar with everything needed to reuse it.

``prompt.safetensors`` holds ``prompt`` (the final ``[n, d]`` matrix, float32) and, for a
reparameterized prompt, ``reparam.input`` (``P``) and the network as ``reparam.net.*`` so
that training can resume. ``prompt.json`` names the model and its shape signature, the
verbalizer, the prompt and training configs, the data sample and the package version.

An ensemble of ``K`` prompts is one artifact: member ``i``'s tensors are stored under
``members.<i>.`` (``members.0.prompt``, ``members.0.reparam.input``, ...) and the sidecar's
``ensemble`` entry holds each member's configs, sample and training history. With a calibration
that standardizes, ``reference.mean`` and ``reference.std`` (``[P, d]``) hold the training
language's read-out statistics.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .calibration import StateStatistics
from .errors import XlsptError
from .files import write_json_atomic, write_with_atomic
from .prompt import PromptConfig, SoftPrompt

PROMPT_FILE = "prompt.safetensors"
SIDECAR_FILE = "prompt.json"
FORMAT_VERSION = "1.2"  # MAJOR.MINOR; 1.1 added ensembles; 1.2 the prompt file's checksum and the label set
#: Sidecar keys this version knows; a newer minor version's others are ignored with a warning.
KNOWN_KEYS = {
    "format_version", "prompt_sha256", "xlspt_version", "created", "model", "model_signature", "labels", "label_words",
    "label_token_ids", "dtype", "allow_first_subtoken", "prompt_config", "train_config", "data", "best_epoch",
    "best_val_loss", "history", "train_seconds", "ensemble", "calibration", "diverged",
}


def _soft_prompt_tensors(soft_prompt: SoftPrompt | None) -> dict[str, torch.Tensor]:
    extra = {}
    if soft_prompt is not None and soft_prompt.reparam is not None:
        extra["reparam.input"] = soft_prompt.weight.detach().float().cpu().contiguous()
        for key, value in soft_prompt.reparam.state_dict().items():
            extra[f"reparam.net.{key}"] = value.detach().float().cpu().contiguous()
    return extra


class FormatWarning(Warning):
    """A sidecar from a newer minor format version: what this version does not know is ignored."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_format(metadata: dict, where: Path) -> None:
    """Refuse a sidecar of a newer MAJOR format version; warn about unknown keys of a newer MINOR one."""
    version = str(metadata.get("format_version", "1.0"))
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        raise XlsptError(f"{where} has the format version {version!r}, not MAJOR.MINOR: it is not an xlspt prompt sidecar") from None
    ours = tuple(int(x) for x in FORMAT_VERSION.split("."))
    if major > ours[0]:
        raise XlsptError(f"{where} is format {version}, newer than this xlspt reads ({FORMAT_VERSION}): upgrade xlspt")
    unknown = sorted(set(metadata) - KNOWN_KEYS)
    if unknown and (major, minor) > ours:
        warnings.warn(f"{where} is format {version} (this xlspt reads {FORMAT_VERSION}); ignoring its unknown "
                      f"entries {', '.join(unknown)}", FormatWarning, stacklevel=3)


@dataclass
class PromptArtifact:
    """Trained prompt matrices ``[n_i, d]`` (one, or an ensemble's members) and the sidecar's content.

    ``extra_tensors`` holds, per member, what resuming training needs (a reparameterization network).
    """

    prompts: list[torch.Tensor]
    metadata: dict
    extra_tensors: list[dict[str, torch.Tensor]] = field(default_factory=list)
    reference: StateStatistics | None = None

    def __post_init__(self) -> None:
        if isinstance(self.prompts, torch.Tensor):
            self.prompts = [self.prompts]
        if isinstance(self.extra_tensors, dict):
            self.extra_tensors = [self.extra_tensors]
        self.extra_tensors = list(self.extra_tensors) + [{}] * (len(self.prompts) - len(self.extra_tensors))

    @classmethod
    def from_soft_prompts(cls, soft_prompts: list[SoftPrompt], metadata: dict) -> "PromptArtifact":
        return cls(prompts=[sp.export().float().cpu().contiguous() for sp in soft_prompts], metadata=metadata,
                   extra_tensors=[_soft_prompt_tensors(sp) for sp in soft_prompts])

    @classmethod
    def from_soft_prompt(cls, soft_prompt: SoftPrompt, metadata: dict) -> "PromptArtifact":
        return cls.from_soft_prompts([soft_prompt], metadata)

    @property
    def prompt(self) -> torch.Tensor:
        """The prompt (an ensemble's first member)."""
        return self.prompts[0]

    @property
    def is_ensemble(self) -> bool:
        return len(self.prompts) > 1

    def tensors(self) -> dict[str, torch.Tensor]:
        """What goes into ``prompt.safetensors``."""
        if not self.is_ensemble:
            out = {"prompt": self.prompt.float().cpu().contiguous(), **self.extra_tensors[0]}
        else:
            out = {}
            for i, (prompt, extra) in enumerate(zip(self.prompts, self.extra_tensors)):
                out[f"members.{i}.prompt"] = prompt.float().cpu().contiguous()
                out.update({f"members.{i}.{k}": v for k, v in extra.items()})
        if self.reference is not None:
            out["reference.mean"] = self.reference.mean.float().cpu().contiguous()
            out["reference.std"] = self.reference.std.float().cpu().contiguous()
        return out

    def save(self, directory: str | Path) -> Path:
        """Write ``prompt.safetensors`` and ``prompt.json`` into ``directory`` (each atomically)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = self.tensors()
        write_with_atomic(directory / PROMPT_FILE, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "xlspt"}))
        metadata = {k: v for k, v in self.metadata.items() if k not in ("format_version", "prompt_sha256")}
        write_json_atomic(directory / SIDECAR_FILE, {"format_version": FORMAT_VERSION,
                                                     "prompt_sha256": sha256_file(directory / PROMPT_FILE), **metadata})
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
        if not isinstance(metadata, dict):
            raise XlsptError(f"{sidecar_path} is not a JSON object: it is not an xlspt prompt sidecar")
        check_format(metadata, sidecar_path)
        expected = metadata.get("prompt_sha256")
        if expected is not None and expected != sha256_file(tensor_path):
            raise XlsptError(f"{tensor_path} does not match the checksum in {sidecar_path.name} (changed or damaged since "
                             "it was saved): restore the pair, or train the prompt again")
        for key in ("model", "model_signature", "label_words", "prompt_config"):
            if key not in metadata:
                raise XlsptError(f"{sidecar_path} lacks {key!r}: it is not an xlspt prompt sidecar")
        size = int(metadata.get("ensemble", {}).get("size", 1)) if isinstance(metadata.get("ensemble"), dict) else 1
        names = ["prompt"] if size == 1 else [f"members.{i}.prompt" for i in range(size)]
        bad = [n for n in names if n not in tensors or tensors[n].ndim != 2]
        if bad:
            raise XlsptError(f"{tensor_path} holds no [n, d] tensor named {bad[0]!r}: it is not an xlspt prompt file "
                             "(or not the one its sidecar describes)")
        reference = None
        if "reference.mean" in tensors and "reference.std" in tensors:
            reference = StateStatistics(tensors.pop("reference.mean"), tensors.pop("reference.std"))
        if size == 1:
            prompt = tensors.pop("prompt")
            return cls(prompts=[prompt], metadata=metadata, extra_tensors=[tensors], reference=reference)
        prompts = [tensors[f"members.{i}.prompt"] for i in range(size)]
        extra = [{k[len(f"members.{i}.") :]: v for k, v in tensors.items()
                  if k.startswith(f"members.{i}.") and k != f"members.{i}.prompt"} for i in range(size)]
        return cls(prompts=prompts, metadata=metadata, extra_tensors=extra, reference=reference)

    @property
    def model_name(self) -> str:
        return str(self.metadata["model"])

    @property
    def prompt_config(self) -> PromptConfig:
        return PromptConfig(**self.metadata["prompt_config"])

    def member_metadata(self, i: int) -> dict:
        """Member ``i``'s own entries (configs, sample, history); the sidecar itself for a single prompt."""
        if not self.is_ensemble:
            return self.metadata
        return {**self.metadata, **self.metadata["ensemble"]["members"][i]}

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

    def soft_prompt(self, member: int = 0) -> SoftPrompt:
        """Rebuild the trainable module (with its network, if reparameterized) to resume training."""
        config = PromptConfig(**self.member_metadata(member)["prompt_config"])
        prompt, extra = self.prompts[member], self.extra_tensors[member]
        module = SoftPrompt(config, int(prompt.shape[1]))
        with torch.no_grad():
            if config.reparam_hidden is None:
                module.weight.copy_(prompt)
            else:
                module.weight.copy_(extra["reparam.input"])
                net = {k[len("reparam.net.") :]: v for k, v in extra.items() if k.startswith("reparam.net.")}
                module.reparam.load_state_dict(net)
        return module

    def soft_prompts(self) -> list[SoftPrompt]:
        return [self.soft_prompt(i) for i in range(len(self.prompts))]
