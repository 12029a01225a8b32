"""The model card (``README.md``) of a saved prompt folder: what a reader of a shared prompt must know.

A prompt folder is a few kilobytes that are useless without the base model they were trained
against, so the card states that dependency, the label words and the protocol behind every number.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from .calibration import CalibrationConfig, describe_protocol
from .data.languages import hub_language_code
from .data.sib200 import HUB_DATASET as SIB200_HUB, LICENCE as SIB200_LICENCE, RELEASE as SIB200_RELEASE
from .errors import XlsptError
from .files import write_text_atomic
from .layout import CARD_FILE

TAGS = ("xlspt", "soft-prompt", "prompt-tuning", "cross-lingual", "text-classification")
#: The Hub's own rule (owner optional): letters, digits, ``-_.``, no ``--``/``..``, at most 96 characters a part.
_REPO_PART = r"(?!.*(?:--|\.\.))[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
REPO_ID = re.compile(rf"(?:{_REPO_PART}/)?{_REPO_PART}")
#: Embedded model aliases -> the Hub id of the same weights, so that ``base_model`` links somewhere.
_HUB_NAMES = {"gemma-3-270m": "google/gemma-3-270m"}


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _words(word: str) -> str:
    # Quoted, because the leading space of " sports" is part of the token the prompt reads.
    return ", ".join(f"`{json.dumps(w, ensure_ascii=False)}`" for w in str(word).split("|"))


def _hub_dataset(data: dict) -> str | None:
    """The Hub id of the training data (the card's ``datasets:``): a Hub dataset's own, or SIB-200's."""
    source = str(data.get("source") or "")
    if source.startswith("hf:"):
        name = source[3:].split(":")[0]
        return name if REPO_ID.fullmatch(name) else None
    if source == SIB200_RELEASE:
        return SIB200_HUB
    # Before 1.4 a sample (then without a checksum) named SIB-200 by its folder's path (../shared/sib200).
    if "checksum" not in data and "sib200" in source.lower().replace("-", ""):
        return SIB200_HUB
    return None


def _is_sib200(data: dict) -> bool:
    return (_hub_dataset(data) or "").lower() == SIB200_HUB.lower()


def _reported(results: pd.DataFrame | None) -> pd.DataFrame | None:
    """The rows the card reports: none without results; an ensemble's vote, not its members alone (``--members``)."""
    if results is None or not len(results):
        return None
    return results[results["member"].astype(str) == "ensemble"] if "member" in results else results


def _languages(train_lang: str | None, results: pd.DataFrame | None) -> list[str]:
    """The card's ``language:``: the training language and every language it reports, as the Hub codes them."""
    codes = [train_lang, *(results["language"] if results is not None else [])]
    return list(dict.fromkeys(c for c in (hub_language_code(code) for code in codes if code) if c))


def model_card(metadata: dict, results: pd.DataFrame | None = None, *, repo_id: str | None = None) -> str:
    """The ``README.md`` (Hugging Face model card) of a saved prompt folder, from its sidecar ``metadata``.

    ``results``: per-language results (``language, accuracy, macro_f1, n[, protocol][, member]``).
    ``repo_id``: the name readers load it by (default: a placeholder). Older sidecars may lack any key.
    """
    model = str(metadata.get("model") or "unknown")
    data = metadata.get("data") or {}
    ensemble = metadata.get("ensemble") or {}
    words = metadata.get("label_words") or {}
    labels = list(metadata.get("labels") or words)
    results = _reported(results)
    sections = [
        _front_matter(model, data, _languages(data.get("train_language"), results)),
        _title(model, (metadata.get("prompt_config") or {}).get("length", "?"), ensemble, metadata.get("lora")),
        _base_model(metadata, model),
        _labels(labels, words),
        _training_data(data, labels, ensemble),
        _prompt_and_training(metadata),
        _ensemble(ensemble),
        _adapters(metadata.get("lora")),
        _size(metadata),
    ]
    protocol = _protocol_name(metadata.get("calibration") or {})
    protocol_lines = ["## Protocol", "", f"- default calibration: {describe_protocol(protocol)}"]
    self_training = metadata.get("self_training")
    if self_training:  # protocol b whatever the calibration: the prompts read target-language text
        protocol_lines.append(f"- self-trained (protocol b) on its own confident labels of unlabeled text in "
                              f"{len(self_training.get('languages') or {})} languages ({self_training.get('scope')})")
    sections += [protocol_lines,
                 _results(results, protocol), _usage(model, repo_id), _licence(model, data)]
    # Sections are separated by one blank line; an absent one (no ensemble, no results) leaves none.
    return "\n\n".join("\n".join(lines) for lines in sections if lines) + "\n"


def write_model_card(directory: str | Path, metadata: dict, results: pd.DataFrame | None = None, *,
                     repo_id: str | None = None) -> Path:
    """Write the folder's ``README.md`` (:func:`model_card`) atomically; the one way a card reaches a folder."""
    path = Path(directory) / CARD_FILE
    write_text_atomic(path, model_card(metadata, results, repo_id=repo_id))
    return path


def front_matter(card: str) -> str:
    """The YAML header of a card written by :func:`model_card` (between its two ``---`` lines)."""
    return card.split("---\n")[1] if card.startswith("---\n") else ""


def _front_matter(model: str, data: dict, languages: list[str]) -> list[str]:
    """The YAML header the Hub indexes the card by."""
    hub_model = _HUB_NAMES.get(model, model)
    front = ["---", "library_name: xlspt"]
    # A local path or a .gguf file is no Hub id: the Hub rejects such a base_model.
    if REPO_ID.fullmatch(hub_model) and "/" in hub_model:
        front.append(f"base_model: {json.dumps(hub_model)}")
    if "gemma" in model.lower():
        front.append("license: gemma")
    dataset = _hub_dataset(data)
    if dataset:
        front.append(f"datasets:\n- {json.dumps(dataset)}")
    if languages:
        front.append("language:\n" + "\n".join(f"- {json.dumps(code)}" for code in languages))
    return [*front, "tags:", *[f"- {t}" for t in TAGS], "pipeline_tag: text-classification", "---"]


def _title(model: str, length: object, ensemble: dict, lora: dict | None = None) -> list[str]:
    """The heading and what the prompt is: the input layout and its dependence on the base model."""
    kind = f"an ensemble of {ensemble.get('size', '?')} soft prompts" if ensemble else "a soft prompt"
    adapters = (f", each with its own low-rank adapters (LoRA) on the model's {', '.join(lora.get('target_modules') or ['attention query and value'])} layers"
                if lora else "")
    return [f"# {kind[kind.index(' ') + 1:].capitalize()}{' with low-rank adapters' if lora else ''} for `{model}`", "",
            f"This is {kind} ({length} vectors{' each' if ensemble else ''}){adapters} trained with "
            "xlspt for a **frozen** causal language model. The input is laid out as "
            "`text + prompt vectors + EOS`; the class is read from the logits of the label words at the last "
            "prompt vector (the position before EOS). The prompt only works with the base model below, unchanged (same weights and tokenizer)"
            + ("; the adapters are added to it only while the prompt reads text." if lora else ".")]


def _base_model(metadata: dict, model: str) -> list[str]:
    hub_model = _HUB_NAMES.get(model, model)
    signature = metadata.get("model_signature") or {}
    out = ["## Base model", "", f"- name: `{model}`" + (f" (Hub: `{hub_model}`)" if hub_model != model else ""),
           f"- dtype at training: {metadata.get('dtype', 'unknown')}"]
    return out + [f"- {k.replace('_', ' ')}: {signature[k]}" for k in ("model_type", "hidden_size", "num_hidden_layers")
                  if k in signature]


def _labels(labels: list, words: dict) -> list[str]:
    out = ["## Labels", "", "| class | label word(s) |", "|---|---|"]
    out += [f"| {_cell(c)} | {_cell(_words(words[c])) if c in words else '?'} |" for c in labels]
    if any("|" in str(w) for w in words.values()):
        out += ["", "A class with several words scores the log-sum-exp of their logits."]
    return out


def _training_data(data: dict, labels: list, ensemble: dict) -> list[str]:
    if not data:
        return ["## Training data", "", "Not recorded in this prompt's metadata."]
    n_train = len(data["train_index_ids"]) if "train_index_ids" in data else (
        data["shots_per_class"] * len(labels) if "shots_per_class" in data and labels else "?")
    return ["## Training data", "", f"- source: `{data.get('source') or '?'}`"
            + (f" (SHA-256 of the rows read: `{data['checksum']}`)" if data.get("checksum") else ""),
            f"- training language: {data.get('train_language') or '?'}",
            f"- shots per class: {data.get('shots_per_class', '?')} (sampling seed {data.get('sampling_seed', '?')})",
            f"- training examples: {n_train}" + (" per member" if ensemble else "")]


def _prompt_and_training(metadata: dict) -> list[str]:
    out = ["## Prompt and training", ""]
    for key in ("prompt_config", "train_config"):
        if isinstance(metadata.get(key), dict):
            out.append(f"- {key.replace('_', ' ')}: " + ", ".join(f"{k}={v}" for k, v in metadata[key].items()))
    loss = metadata.get("best_val_loss")
    return out + [f"- best epoch: {metadata.get('best_epoch', '?')}, best validation loss: "
                  + (f"{loss:.4f}" if isinstance(loss, (int, float)) else "?")]


def _ensemble(ensemble: dict) -> list[str]:
    """How the members were trained and vote (nothing for a single prompt)."""
    if not ensemble:
        return []
    out = ["## Ensemble", "", f"- {ensemble.get('size', '?')} prompts, seeds {ensemble.get('seeds', '?')}, "
           f"{ensemble.get('sampling', '?')} training samples; predictions average the members' class log-probabilities"]
    if "distinct_train_examples" in ensemble:
        out.append(f"- distinct training examples: {ensemble['distinct_train_examples']}")
    return out


def _adapters(lora: dict | None) -> list[str]:
    """The low-rank adapters' settings (nothing for prompts without adapters)."""
    if not lora:
        return []
    settings = ", ".join(f"{k}={v}" for k, v in lora.items() if k not in ("file", "sha256", "parameters"))
    return ["## Low-rank adapters", "", f"- settings: {settings}",
            f"- weights: `{lora.get('file')}` ({lora.get('parameters', '?')} numbers, PEFT's key names"
            "; an ensemble's member i under `members.<i>.`)"]


def _size(metadata: dict) -> list[str]:
    """What a user stores per task: the numbers of the prompts (and adapters), and their bytes in float32."""
    width = (metadata.get("model_signature") or {}).get("hidden_size")
    members = (metadata.get("ensemble") or {}).get("members") or [metadata]
    lengths = [(m.get("prompt_config") or {}).get("length") for m in members]
    if not width or not all(isinstance(n, int) for n in lengths):
        return []
    prompts = sum(lengths) * int(width)
    adapters = int((metadata.get("lora") or {}).get("parameters") or 0)
    kinds = f"{prompts:,} in the prompt vectors" + (f", {adapters:,} in the adapters" if adapters else "")
    return ["## Size per task", "", f"- stored numbers: {prompts + adapters:,} ({kinds}), about "
            f"{4 * (prompts + adapters) / 1e6:.2f} MB in float32; the base model is shared by every task"]


def _protocol_name(calibration: dict) -> str:
    """The default calibration's name, as results tables name it."""
    try:  # sidecars before the "name" entry hold the protocol's fields only
        return calibration.get("name") or CalibrationConfig.from_dict(calibration).name
    except (XlsptError, ValueError, TypeError):
        return str(calibration.get("protocol", "zero-shot"))


def _results(results: pd.DataFrame | None, protocol: str) -> list[str]:
    """The per-language table and each protocol's mean (nothing without results)."""
    if results is None:
        return []
    results = results.assign(protocol=results["protocol"] if "protocol" in results else protocol)
    out = ["## Results", "", "| language | accuracy (%) | macro-F1 (%) | n | protocol |", "|---|---:|---:|---:|---|"]
    out += [f"| {_cell(r.language)} | {100 * r.accuracy:.1f} | {100 * r.macro_f1:.1f} | {int(r.n)} | {_cell(r.protocol)} |"
            for r in results.itertuples()]
    out.append("")
    return out + [f"Mean accuracy over these {len(g)} languages ({_cell(p)}): {100 * g['accuracy'].mean():.1f}%"
                  for p, g in results.groupby("protocol", sort=True)]


def _usage(model: str, repo_id: str | None) -> list[str]:
    name = repo_id or "<repo or dir>"
    return ["## How to use", "", "```python", "import xlspt", "",
            f'clf = xlspt.PromptClassifier.from_pretrained("{name}")  # loads {model} too',
            "clf.predict([\"Le match s'est terminé sur un score nul.\"])", "```", "", "```bash",
            'xlspt predict --prompt DIR "Le match s\'est terminé sur un score nul."  # DIR: the downloaded folder', "```"]


def _licence(model: str, data: dict) -> list[str]:
    """The base model's terms and the training data's licence, side by side."""
    out = ["## Licence", "", "- base model: the prompt is derived from the base model, whose own terms apply to it"
           + (": the Gemma Terms of Use (https://ai.google.dev/gemma/terms)" if "gemma" in model.lower() else "")]
    dataset = _hub_dataset(data)
    if _is_sib200(data):
        out.append(f"- training data: SIB-200, licensed {SIB200_LICENCE}")
    elif dataset:
        out.append(f"- training data: the Hub dataset `{dataset}`, under the licence on its card "
                   f"(https://huggingface.co/datasets/{dataset})")
    elif data.get("source"):
        out.append(f"- training data: `{data['source']}`, the trainer's own; xlspt does not know its licence, "
                   "which applies to what the prompt learnt from it")
    return out
