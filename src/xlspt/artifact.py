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

from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .calibration import StateStatistics
from .errors import XlsptError
from .files import write_with_atomic
from .layout import LORA_SIDECAR, PROMPT_FILE
from .soft_prompt import PromptConfig, SoftPrompt
from .sidecar import FORMAT_VERSION, FormatWarning, PromptSidecar, sha256_file  # noqa: F401 (the format's names)


def _soft_prompt_tensors(soft_prompt: SoftPrompt | None) -> dict[str, torch.Tensor]:
    extra = {}
    if soft_prompt is not None and soft_prompt.reparam is not None:
        extra["reparam.input"] = soft_prompt.weight.detach().float().cpu().contiguous()
        for key, value in soft_prompt.reparam.state_dict().items():
            extra[f"reparam.net.{key}"] = value.detach().float().cpu().contiguous()
    return extra


@dataclass
class PromptArtifact:
    """Trained prompt matrices ``[n_i, d]`` (one, or an ensemble's members) and their typed sidecar.

    ``extra_tensors`` holds, per member, what resuming training needs (a reparameterization network).
    """

    prompts: list[torch.Tensor]
    metadata: PromptSidecar
    extra_tensors: list[dict[str, torch.Tensor]] = field(default_factory=list)
    reference: StateStatistics | None = None

    def __post_init__(self) -> None:
        if isinstance(self.prompts, torch.Tensor):
            self.prompts = [self.prompts]
        if isinstance(self.extra_tensors, dict):
            self.extra_tensors = [self.extra_tensors]
        self.extra_tensors = list(self.extra_tensors) + [{}] * (len(self.prompts) - len(self.extra_tensors))

    @classmethod
    def from_soft_prompts(cls, soft_prompts: list[SoftPrompt], metadata: PromptSidecar,
                          prompts: list[torch.Tensor] | None = None) -> "PromptArtifact":
        """``prompts``: the matrices a classifier scores with (default: each soft prompt's export). A prompt read
        from a file is written back as it was read: its reparameterization, run again on another CPU, can differ
        in the last bit."""
        prompts = prompts if prompts is not None else [sp.export() for sp in soft_prompts]
        return cls(prompts=[p.float().cpu().contiguous() for p in prompts], metadata=metadata,
                   extra_tensors=[_soft_prompt_tensors(sp) for sp in soft_prompts])

    @classmethod
    def from_soft_prompt(cls, soft_prompt: SoftPrompt, metadata: PromptSidecar) -> "PromptArtifact":
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
        self.metadata.write(directory)
        return directory / PROMPT_FILE

    @classmethod
    def load(cls, path: str | Path, kind: type[PromptSidecar] = PromptSidecar) -> "PromptArtifact":
        """Read a prompt from a run directory or a ``.safetensors`` file with its ``.json`` sidecar (``kind``: the
        sidecar a folder holds, ``prompt.json`` or, with adapters, ``lora.json``)."""
        path = Path(path).expanduser()
        if path.is_dir():
            tensor_path, sidecar_path = path / PROMPT_FILE, path / kind.sidecar_file
        else:
            tensor_path, sidecar_path = path, path.with_suffix(".json")
        if not tensor_path.is_file():
            raise XlsptError(f"no prompt at {str(tensor_path)!r}: pass a run directory (--out of `xlspt train`) or a .safetensors file")
        if not sidecar_path.is_file() and (tensor_path.parent / LORA_SIDECAR).is_file() and kind is PromptSidecar:
            raise XlsptError(f"{tensor_path} is the prompt of a classifier with low-rank adapters (lora.json beside it): "
                             f"load its folder whole (--prompt {tensor_path.parent}, or xlspt.load_classifier)")
        if not sidecar_path.is_file():
            raise XlsptError(f"prompt {tensor_path} has no sidecar {sidecar_path.name}: keep both files of a trained prompt together")
        try:
            tensors = load_file(str(tensor_path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise XlsptError(f"{tensor_path} is not a readable safetensors file ({exc}): re-train or restore it") from None
        metadata = kind.read(sidecar_path)
        if metadata.sha256 is not None and metadata.sha256 != sha256_file(tensor_path):
            raise XlsptError(f"{tensor_path} does not match the checksum in {sidecar_path.name} (changed or damaged since "
                             "it was saved): restore the pair, or train the prompt again")
        size = len(metadata.members)
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
        return self.metadata.model

    def check_model(self, signature: dict, model_name: str) -> None:
        """Refuse a model whose shape differs from the one the prompt was trained with."""
        self.metadata.check_model(signature, model_name, width=int(self.prompt.shape[1]))

    def soft_prompt(self, member: int = 0) -> SoftPrompt:
        """Rebuild the trainable module (with its network, if reparameterized) to resume training."""
        config: PromptConfig = self.metadata.members[member].prompt_config
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
