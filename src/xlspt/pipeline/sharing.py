"""What ``xlspt push`` does: stage a saved folder with its model card and no local path, and upload it (or show
what would go)."""

from __future__ import annotations

from pathlib import Path


from .. import layout
from ..classifiers import (classifier_class)
from ..errors import XlsptError


# ---------------------------------------------------------------- sharing


def push(folder: str | Path, repo: str, *, hub: str | None = None, token: str | None = None,
         private: bool = False, dry_run: bool = False) -> str:
    """Share a saved prompt folder as ``repo`` with its model card (its results too, when the folder has them),
    with no local path in any file uploaded (:func:`~xlspt.hub.stage_shareable`); returns where it went.

    ``dry_run``: upload nothing; return what would be uploaded, where: each file with its size, and the
    model card's metadata.
    """
    import tempfile

    from ..card import front_matter
    from ..hub import push_folder, shared_kind, stage_shareable

    folder = Path(folder)
    kind = shared_kind(folder) if folder.is_dir() else None
    if kind is None or not (folder / layout.PROMPT_FILE).is_file():
        raise XlsptError(f"--prompt {folder} is not a saved prompt folder (no {layout.PROMPT_FILE} and "
                         f"{layout.PROMPT_SIDECAR}): pass the --out folder of `xlspt run` or `xlspt train`")
    # refuses a damaged or foreign folder before anything is staged
    loaded = classifier_class(kind.method).load_sidecar(folder)
    loaded.check_weights(folder)
    with tempfile.TemporaryDirectory(prefix="xlspt-push-") as staging:
        files = stage_shareable(folder, staging, repo_id=repo)
        where = push_folder(staging, repo, hub=hub, token=token, private=private, dry_run=dry_run)
        if not dry_run:
            return where
        width = max(len(p.name) for p in files)
        card = front_matter((Path(staging) / layout.CARD_FILE).read_text(encoding="utf-8"))
        return "\n".join([f"would upload {len(files)} files to {where}:",
                          *(f"  {p.name:<{width}}  {p.stat().st_size:>9,} bytes" for p in files),
                          "model card metadata:", *(f"  {line}" for line in card.splitlines())])


