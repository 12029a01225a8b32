"""Sharing a saved prompt: its model card, pushing its folder, and finding it again by name.

A prompt folder is a few kilobytes that are useless without the base model they were trained
against, so the card states that dependency, the label words and the protocol behind every
number. The "hub" is the Hugging Face Hub, or a local directory (``hub=DIR`` or
``$XLSPT_HUB_DIR``) laid out like it, for air-gapped machines and for tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from .calibration import CalibrationConfig
from .errors import XlsptError

LOCAL_HUB_ENV = "XLSPT_HUB_DIR"
TAGS = ("xlspt", "soft-prompt", "prompt-tuning", "cross-lingual", "text-classification")
#: The Hub's own rule (owner optional): letters, digits, ``-_.``, no ``--``/``..``, at most 96 characters a part.
_REPO_PART = r"(?!.*(?:--|\.\.))[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO_ID = re.compile(rf"(?:{_REPO_PART}/)?{_REPO_PART}")
#: Embedded model aliases -> the Hub id of the same weights, so that ``base_model`` links somewhere.
_HUB_NAMES = {"gemma-3-270m": "google/gemma-3-270m"}
_FILES = ["*.json", "*.safetensors", "*.md"]


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _words(word: str) -> str:
    # Quoted, because the leading space of " sports" is part of the token the prompt reads.
    return ", ".join(f"`{json.dumps(w, ensure_ascii=False)}`" for w in str(word).split("|"))


def _is_sib200(source: str) -> bool:
    return "sib200" in source.lower().replace("-", "")


def model_card(metadata: dict, results: pd.DataFrame | None = None, *, repo_id: str | None = None) -> str:
    """The ``README.md`` (Hugging Face model card) of a saved prompt folder, from its sidecar ``metadata``.

    ``results``: per-language results (``language, accuracy, macro_f1, n[, protocol][, member]``).
    ``repo_id``: the name readers load it by (default: a placeholder). Older sidecars may lack any key.
    """
    model = str(metadata.get("model") or "unknown")
    hub_model = _HUB_NAMES.get(model, model)
    data = metadata.get("data") or {}
    source, train_lang = str(data.get("source") or ""), data.get("train_language")
    ensemble = metadata.get("ensemble") or {}
    calibration = metadata.get("calibration") or {}
    words = metadata.get("label_words") or {}
    labels = list(metadata.get("labels") or words)
    front = ["---", "library_name: xlspt"]
    # A local path or a .gguf file is no Hub id: the Hub rejects such a base_model.
    if _REPO_ID.fullmatch(hub_model) and "/" in hub_model:
        front.append(f"base_model: {json.dumps(hub_model)}")
    if "gemma" in model.lower():
        front.append("license: gemma")
    if source.startswith("hf:") or _is_sib200(source):
        front.append(f"datasets:\n- {json.dumps(source[3:] if source.startswith('hf:') else 'Davlan/sib200')}")
    if train_lang:
        front.append(f"language:\n- {json.dumps(str(train_lang).split('_')[0])}")
    front += ["tags:", *[f"- {t}" for t in TAGS], "pipeline_tag: text-classification", "---", ""]

    length = (metadata.get("prompt_config") or {}).get("length", "?")
    kind = f"an ensemble of {ensemble.get('size', '?')} soft prompts" if ensemble else "a soft prompt"
    out = [*front, f"# {kind[kind.index(' ') + 1:].capitalize()} for `{model}`", "",
           f"This is {kind} ({length} vectors{' each' if ensemble else ''}) trained with "
           "xlspt for a **frozen** causal language model. The input is laid out as "
           "`text + prompt vectors + EOS`; the class is read from the logits of the label words at the last "
           "prompt vector (the position before EOS). The prompt only works with the base model below, unchanged (same weights and tokenizer).", ""]
    signature = metadata.get("model_signature") or {}
    out += ["## Base model", "", f"- name: `{model}`" + (f" (Hub: `{hub_model}`)" if hub_model != model else ""),
            f"- dtype at training: {metadata.get('dtype', 'unknown')}"]
    out += [f"- {k.replace('_', ' ')}: {signature[k]}" for k in ("model_type", "hidden_size", "num_hidden_layers") if k in signature]
    out += ["", "## Labels", "", "| class | label word(s) |", "|---|---|"]
    out += [f"| {_cell(c)} | {_cell(_words(words[c])) if c in words else '?'} |" for c in labels]
    if any("|" in str(w) for w in words.values()):
        out += ["", "A class with several words scores the log-sum-exp of their logits."]
    out += ["", "## Training data", ""]
    if data:
        n_train = len(data["train_index_ids"]) if "train_index_ids" in data else (
            data["shots_per_class"] * len(labels) if "shots_per_class" in data and labels else "?")
        out += [f"- source: `{source or '?'}`", f"- training language: {train_lang or '?'}",
                f"- shots per class: {data.get('shots_per_class', '?')} (sampling seed {data.get('sampling_seed', '?')})",
                f"- training examples: {n_train}" + (" per member" if ensemble else "")]
    else:
        out.append("Not recorded in this prompt's metadata.")
    out += ["", "## Prompt and training", ""]
    for key in ("prompt_config", "train_config"):
        if isinstance(metadata.get(key), dict):
            out.append(f"- {key.replace('_', ' ')}: " + ", ".join(f"{k}={v}" for k, v in metadata[key].items()))
    out += [f"- best epoch: {metadata.get('best_epoch', '?')}, best validation loss: "
            + (f"{metadata['best_val_loss']:.4f}" if isinstance(metadata.get("best_val_loss"), (int, float)) else "?")]
    if ensemble:
        out += ["", "## Ensemble", "", f"- {ensemble.get('size', '?')} prompts, seeds {ensemble.get('seeds', '?')}, "
                f"{ensemble.get('sampling', '?')} training samples; predictions average the members' class log-probabilities"]
        if "distinct_train_examples" in ensemble:
            out.append(f"- distinct training examples: {ensemble['distinct_train_examples']}")
    from .study.outputs import describe_protocol  # here: the study package imports the classifier, which may import this

    try:  # sidecars before the "name" entry hold the protocol's fields only
        protocol = calibration.get("name") or CalibrationConfig.from_dict(calibration).name
    except (XlsptError, ValueError, TypeError):
        protocol = str(calibration.get("protocol", "zero-shot"))
    out += ["", "## Protocol", "", f"- default calibration: {describe_protocol(protocol)}"]
    if results is not None and len(results):
        if "member" in results:  # an ensemble's table with --members: the card reports the vote
            results = results[results["member"].astype(str) == "ensemble"]
        results = results.assign(protocol=results["protocol"] if "protocol" in results else protocol)
        out += ["", "## Results", "", "| language | accuracy (%) | macro-F1 (%) | n | protocol |", "|---|---:|---:|---:|---|"]
        out += [f"| {_cell(r.language)} | {100 * r.accuracy:.1f} | {100 * r.macro_f1:.1f} | {int(r.n)} | {_cell(r.protocol)} |"
                for r in results.itertuples()]
        out.append("")
        out += [f"Mean accuracy over these {len(g)} languages ({_cell(p)}): {100 * g['accuracy'].mean():.1f}%"
                for p, g in results.groupby("protocol", sort=True)]
    name = repo_id or "<repo or dir>"
    out += ["", "## How to use", "", "```python", "import xlspt", "",
            f'clf = xlspt.PromptClassifier.from_pretrained("{name}")  # loads {model} too',
            "clf.predict([\"Le match s'est terminé sur un score nul.\"])", "```", "", "```bash",
            f'xlspt predict --prompt DIR "Le match s\'est terminé sur un score nul."  # DIR: the downloaded folder', "```",
            "", "## Licence", "", "The prompt is derived from the base model, whose own terms apply to it"
            + (": the Gemma Terms of Use (https://ai.google.dev/gemma/terms)." if "gemma" in model.lower() else ".")]
    if _is_sib200(source):
        out.append("Its training data, SIB-200, is licensed CC BY-SA 4.0.")
    return "\n".join(out) + "\n"


def _check_repo_id(repo_id: str) -> str:
    if not isinstance(repo_id, str) or not _REPO_ID.fullmatch(repo_id):
        raise XlsptError(f"{repo_id!r} is not a repository name: use `owner/name` or `name` (letters, digits, - _ .)")
    return repo_id


def _local_hub(hub: str | os.PathLike | None) -> Path | None:
    hub = hub if hub is not None else os.environ.get(LOCAL_HUB_ENV)
    return Path(hub).expanduser() if hub else None


def push_folder(
    folder: str | os.PathLike, repo_id: str, *, hub: str | os.PathLike | None = None, token: str | None = None,
    private: bool = False, commit_message: str = "Upload xlspt prompt",
) -> str:
    """Publish a saved prompt folder as ``repo_id``; returns where it went (a path or a Hub URL).

    ``hub`` (default ``$XLSPT_HUB_DIR``): a local directory standing in for the Hub; the folder
    lands in ``<hub>/<repo_id>``, replacing an earlier push whole.
    """
    _check_repo_id(repo_id)
    folder = Path(folder)
    if not (folder / "prompt.json").is_file():
        raise XlsptError(f"{folder} holds no saved prompt (prompt.json): pass a folder written by save or save_pretrained")
    local = _local_hub(hub)
    if local is not None:
        dest = local / repo_id
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Copy beside the target and rename it in: a reader sees the old repo or the new one, never a partial copy.
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
        old = tmp.with_suffix(".old")
        try:
            shutil.copytree(folder, tmp, dirs_exist_ok=True)
            if dest.exists():
                os.replace(dest, old)
            try:
                os.replace(tmp, dest)
            except OSError:
                if old.exists():
                    os.replace(old, dest)
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)
        return str(dest)
    import huggingface_hub  # looked up at call time, so that tests can replace HfApi

    try:
        api = huggingface_hub.HfApi(token=token)
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message=commit_message, repo_type="model")
    except Exception as exc:  # noqa: BLE001 - every Hub or network failure becomes one line for the user
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403) or "token" in str(exc).lower():
            fix = "log in with `hf auth login` or pass token=... with write access"
        else:
            fix = f"check the network, or pass hub=DIR (or set {LOCAL_HUB_ENV}) for a local folder"
        raise XlsptError(f"could not push {folder} to the Hub as {repo_id!r} ({exc.__class__.__name__}): {fix}") from exc
    return str(getattr(url, "url", None) or url or f"https://huggingface.co/{repo_id}")


def resolve_pretrained(
    name_or_path: str | os.PathLike, *, hub: str | os.PathLike | None = None, revision: str | None = None,
    token: str | None = None,
) -> Path:
    """The local folder of a saved prompt: a directory, ``<hub>/<name>`` in a local hub, or a Hub download."""
    path = Path(name_or_path).expanduser()
    if path.exists():  # a folder, or a prompt file inside one
        return path
    name = str(name_or_path)
    fix = f"no prompt folder or Hub repository named {name!r}{{}}: pass a directory saved with save_pretrained, or a Hub id"
    local = _local_hub(hub)
    if _REPO_ID.fullmatch(name) is None:  # a path that is not there: asking the Hub would only add a network error
        raise XlsptError(fix.format(""))
    if local is not None and (local / name).is_dir():
        return local / name
    import huggingface_hub

    try:
        found = Path(huggingface_hub.snapshot_download(
            repo_id=name, revision=revision, token=token, allow_patterns=_FILES))
    except Exception as exc:  # noqa: BLE001 - not found, offline, bad revision: one line for the user
        raise XlsptError(fix.format(f" ({exc.__class__.__name__})")) from exc
    if not (found / "prompt.json").is_file():
        raise XlsptError(f"the Hub repository {name!r} holds no xlspt prompt (prompt.json): pass a repository pushed with xlspt")
    return found
