"""Moving saved artifact folders: pushing one to a hub, and finding one again by name.

The "hub" is the Hugging Face Hub, or a local directory (``hub=DIR`` or ``$XLSPT_HUB_DIR``) laid
out like it, for air-gapped machines and for tests. What a shared folder holds is chosen by
:func:`stage_shareable` (no local path in any file, a model card written for it); moving it is
:func:`push_folder`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from .card import REPO_ID as _REPO_ID
from .card import write_model_card
from .errors import XlsptError
from .files import write_json_atomic, write_text_atomic
from .layout import PER_CLASS_FILE, PROMPT_SIDECAR, RESULTS_FILE, SUMMARY_FILE
from .sidecar import PromptSidecar, Sidecar, shareable

LOCAL_HUB_ENV = "XLSPT_HUB_DIR"
_FILES = ["*.json", "*.safetensors", "*.md"]
#: What sharing a prompt folder uploads besides its model card and the artifact's own files (a prompt's, or a prompt's
#: with its adapters: :func:`shared_kind`). Never record.json (the user's own record of the run, with the model and
#: data as they were given on this machine), nor summary.json, figures or model weights.
SHARED_FILES = (RESULTS_FILE, PER_CLASS_FILE, SUMMARY_FILE)


def shared_kind(folder: Path) -> type[PromptSidecar] | None:
    """The sidecar kind of the shareable artifact saved in ``folder`` (a prompt, or a prompt with adapters), else
    ``None``."""
    kind = Sidecar.kind_of(folder)
    return kind if kind is not None and issubclass(kind, PromptSidecar) else None


def _check_repo_id(repo_id: str) -> str:
    if not isinstance(repo_id, str) or not _REPO_ID.fullmatch(repo_id):
        raise XlsptError(f"{repo_id!r} is not a repository name: use `owner/name` or `name` (letters, digits, - _ .)")
    return repo_id


def _local_hub(hub: str | os.PathLike | None) -> Path | None:
    hub = hub if hub is not None else os.environ.get(LOCAL_HUB_ENV)
    return Path(hub).expanduser() if hub else None


def stage_shareable(folder: str | os.PathLike, staging: str | os.PathLike, *, repo_id: str | None = None,
                    results: pd.DataFrame | None = None) -> list[Path]:
    """Write into ``staging`` what sharing the saved prompt folder ``folder`` uploads; returns those files, sorted.

    That is :data:`SHARED_FILES` where ``folder`` has them, each local path the sidecar names (a data source
    written before format 1.4, a model loaded from a folder) replaced by its last component in every one
    (:func:`~xlspt.sidecar.shareable`), and a model card written from the cleaned sidecar. ``results``: the
    card's results (default: the folder's ``results.csv``). Files without a path to clean are copied as they are.
    """
    folder, staging = Path(folder), Path(staging)
    staging.mkdir(parents=True, exist_ok=True)
    kind = shared_kind(folder)
    if kind is None:
        raise XlsptError(f"{folder} holds no saved prompt ({PROMPT_SIDECAR}): pass a folder written by save or save_pretrained")
    clean, replaced = shareable(json.loads((folder / kind.sidecar_file).read_text(encoding="utf-8")))
    weights = [name for name in kind.artifact_files() if name != kind.sidecar_file]
    for name in (*kind.artifact_files(), *SHARED_FILES):
        if not (folder / name).is_file():
            continue
        if name == kind.sidecar_file and replaced:
            write_json_atomic(staging / name, clean)
        elif name not in (*weights, kind.sidecar_file) and replaced:  # the summary names the model as the sidecar does
            text = (folder / name).read_text(encoding="utf-8")
            for path in sorted(replaced, key=len, reverse=True):
                text = text.replace(path, replaced[path])
            write_text_atomic(staging / name, text)
        else:
            shutil.copy2(folder / name, staging / name)
    if results is None and (folder / RESULTS_FILE).is_file():
        results = pd.read_csv(folder / RESULTS_FILE)
    write_model_card(staging, kind.read(staging / kind.sidecar_file).to_dict(), results, repo_id=repo_id)
    return sorted(p for p in staging.iterdir() if p.is_file())


def push_folder(
    folder: str | os.PathLike, repo_id: str, *, hub: str | os.PathLike | None = None, token: str | None = None,
    private: bool = False, commit_message: str = "Upload xlspt prompt", dry_run: bool = False,
) -> str:
    """Publish a folder as ``repo_id``, as it is (:func:`stage_shareable` makes a prompt folder fit to share);
    returns where it went (a path or a Hub URL).

    ``hub`` (default ``$XLSPT_HUB_DIR``): a local directory standing in for the Hub; the folder
    lands in ``<hub>/<repo_id>``, replacing an earlier push whole. ``dry_run``: check the name and the
    folder and return where it would go, moving nothing and asking the Hub nothing.
    """
    _check_repo_id(repo_id)
    folder = Path(folder)
    if shared_kind(folder) is None:
        raise XlsptError(f"{folder} holds no saved prompt (prompt.json): pass a folder written by save or save_pretrained")
    local = _local_hub(hub)
    if dry_run:
        return str(local / repo_id) if local is not None else f"https://huggingface.co/{repo_id}"
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
    if shared_kind(found) is None:
        raise XlsptError(f"the Hub repository {name!r} holds no xlspt prompt (prompt.json): pass a repository pushed with xlspt")
    return found
