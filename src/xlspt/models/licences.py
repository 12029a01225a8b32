"""The model's licence, kept with its converted copy.

:func:`write_licence_notice` copies the licence files shipped with a GGUF's package and writes
``LICENSE-NOTICE.md`` (the model, its licence as named in the GGUF metadata, where it came from) into the
converted folder; a folder converted before this existed gets the notice on its next load.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

from ..errors import first_line
from .catalog import EMBEDDED_PACKAGE

logger = logging.getLogger(__name__)

#: The notice file written into every converted folder.
LICENCE_NOTICE = "LICENSE-NOTICE.md"

#: What is known about licences by their GGUF ``general.license`` id: a name, the terms, the use
#: policy they incorporate, and the notice text the terms require to accompany every copy.
KNOWN_LICENCES = {
    "gemma": {
        "name": "Gemma Terms of Use",
        "link": "https://ai.google.dev/gemma/terms",
        "policy": "Gemma Prohibited Use Policy, https://ai.google.dev/gemma/prohibited_use_policy "
                  "(incorporated into the terms by their section 3.2)",
        "notice": "Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms",
        # A copy of the terms (section 3.1 asks for one with every copy), shipped by the embedded model's package:
        # copied for any GGUF under these terms.
        "terms_file": f"{EMBEDDED_PACKAGE}/data/GEMMA_TERMS.html",
        "redistribution": "Section 3.1 of the terms lets you reproduce or distribute copies of Gemma or Model "
                          "Derivatives (this folder holds modified files of Gemma) only if you "
                          "include the use restrictions of section 3.2 (the Prohibited Use Policy) as an enforceable "
                          "provision in any agreement governing their use or distribution and notify recipients of them, "
                          "give every recipient a copy of the terms, keep prominent notices on modified files, "
                          "and accompany the copy with a \"Notice\" text file containing the sentence quoted above. "
                          "Keep this file and the copied licence files with any copy of this folder.",
    },
}

#: Files of a model package that are licence material: copied into the converted folder.
_LICENCE_FILE = re.compile(r"^(licen[cs]e|copying|notice|.*terms|readme\.upstream)([._-].*)?$", re.IGNORECASE)

_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def gguf_general_metadata(gguf: str | os.PathLike) -> dict[str, object]:
    """The ``general.*`` key/value metadata of a GGUF file (``general.name``, ``general.license``,
    ``general.license.link``...): its strings and numbers, arrays left out.

    Only the header is read, never the tensors: a fraction of a second for Gemma 3 270M, where
    ``gguf.GGUFReader`` takes seconds as it also parses the 262k-token vocabulary and the tensor
    index. Raises ``ValueError`` on a file that is not a little-endian GGUF v2/v3 (``OSError`` on one
    that cannot be read).
    """
    import mmap
    import struct

    def read_string(buffer, pos: int) -> tuple[str, int]:
        (length,) = struct.unpack_from("<Q", buffer, pos)
        end = pos + 8 + length
        if end > len(buffer):
            raise ValueError("truncated string")
        return bytes(buffer[pos + 8:end]).decode("utf-8", "replace"), end

    def read_value(buffer, kind: int, pos: int) -> tuple[object, int]:
        if kind in _GGUF_SCALARS:
            fmt = _GGUF_SCALARS[kind]
            return struct.unpack_from(fmt, buffer, pos)[0], pos + struct.calcsize(fmt)
        if kind == _GGUF_STRING:
            return read_string(buffer, pos)
        if kind == _GGUF_ARRAY:
            item_kind, count = struct.unpack_from("<IQ", buffer, pos)
            pos += 12
            if item_kind in _GGUF_SCALARS:
                return None, pos + count * struct.calcsize(_GGUF_SCALARS[item_kind])
            for _ in range(count):  # strings or nested arrays: skipped one by one
                _, pos = read_value(buffer, item_kind, pos)
            return None, pos
        raise ValueError(f"unknown GGUF value type {kind}")

    with open(gguf, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
        if buffer[:4] != b"GGUF":
            raise ValueError(f"{gguf} is not a GGUF file")
        try:
            (version,) = struct.unpack_from("<I", buffer, 4)
            if version not in (2, 3):
                raise ValueError(f"unsupported GGUF version {version}")
            _, kv_count = struct.unpack_from("<QQ", buffer, 8)
            pos, metadata = 24, {}
            for _ in range(kv_count):
                key, pos = read_string(buffer, pos)
                (kind,) = struct.unpack_from("<I", buffer, pos)
                value, pos = read_value(buffer, kind, pos + 4)
                if key.startswith("general.") and value is not None:
                    metadata[key] = value
        except struct.error as exc:
            raise ValueError(f"truncated GGUF header: {exc}") from None
    return metadata


def _package_licence_info(package: str) -> tuple[dict[str, str], list[Path]]:
    """What the Python package ``package`` (an import name) says about its licence, and its licence files.

    The information: its distribution's name, version, ``License``/``License-Expression`` and source URL,
    and the ``license``/``base_model`` of an upstream model card (``README.upstream.md``) it ships.
    The files: those of the package's folder (and its ``data/``) and of its dist-info that are named like
    licence material (LICENSE, COPYING, NOTICE, ...TERMS, README.upstream).
    """
    import importlib.metadata
    import importlib.util

    info: dict[str, str] = {}
    files: list[Path] = []
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return info, files
    root = Path(next(iter(spec.submodule_search_locations)))
    for folder in (root, root / "data"):
        if folder.is_dir():
            files.extend(p for p in sorted(folder.iterdir()) if p.is_file() and _LICENCE_FILE.match(p.name))
    distributions = importlib.metadata.packages_distributions().get(package, [])
    if distributions:
        dist = importlib.metadata.distribution(distributions[0])
        meta = dist.metadata
        info["distribution"] = f"{meta['Name']} {meta['Version']}"
        licence = meta.get("License-Expression") or meta.get("License")
        if licence:
            info["package_licence"] = licence.strip().splitlines()[0]
        for url in meta.get_all("Project-URL") or []:
            label, _, address = url.partition(",")
            if label.strip().lower() in ("source", "homepage"):
                info.setdefault("source_url", address.strip())
        for entry in dist.files or []:
            name = Path(str(entry)).name
            if (".dist-info" in str(entry) and _LICENCE_FILE.match(name)
                    and not name.upper().startswith("README")):
                path = Path(str(dist.locate_file(entry)))
                if path.is_file() and path not in files:
                    files.append(path)
    card = next((p for p in files if p.name.lower().startswith("readme.upstream")), None)
    if card is not None:
        import yaml

        text = card.read_text(encoding="utf-8", errors="replace")
        if text.startswith("---"):
            try:
                front = yaml.safe_load(text.split("---", 2)[1]) or {}
            except yaml.YAMLError:
                front = {}
            if isinstance(front, dict):
                for key in ("license", "base_model"):
                    if isinstance(front.get(key), str):
                        info[f"card_{key}"] = front[key]
    return info, files


def licence_notice_text(metadata: dict[str, object], package_info: dict[str, str], gguf_name: str,
                        copied: list[str]) -> str:
    """The text of ``LICENSE-NOTICE.md`` from a GGUF's ``general.*`` metadata and its package's licence information."""
    licence_id = str(metadata.get("general.license") or package_info.get("card_license") or "").strip()
    known = KNOWN_LICENCES.get(licence_id.lower(), {})
    name = str(metadata.get("general.name") or package_info.get("card_base_model") or Path(gguf_name).stem)
    licence_name = str(metadata.get("general.license.name") or known.get("name") or licence_id or "not stated")
    link = str(metadata.get("general.license.link") or known.get("link") or "")
    lines = [f"# Licence notice: {name}", ""]
    if known.get("notice"):
        lines += [known["notice"], ""]
    lines += [
        f"The files in this folder are a copy of the model {name}, converted by xlspt from the GGUF file "
        f"`{gguf_name}`: its weights de-quantised to float32 and saved, with its config and tokenizer, "
        "in the transformers format (safetensors). The conversion modified the files; the model's own "
        "licence applies to them unchanged.",
        "",
        f"- Model: {name}" + (f" (base model: {package_info['card_base_model']})" if "card_base_model" in package_info else ""),
        f"- Licence: {licence_name}" + (f", {link}" if link else "")
        + (f" (GGUF `general.license`: `{licence_id}`)" if licence_id else " (the GGUF file names none: ask its provider)"),
    ]
    if known.get("policy"):
        lines.append(f"- Use restrictions: {known['policy']}")
    source = [f"GGUF file `{gguf_name}`"]
    for key in ("general.source.url", "general.source.repo_url", "general.repo_url", "general.url"):
        if metadata.get(key):
            source.append(str(metadata[key]))
    if "distribution" in package_info:
        source.append(f"Python package {package_info['distribution']}"
                      + (f" ({package_info['source_url']})" if "source_url" in package_info else "")
                      + (f", whose own licence metadata says: {package_info['package_licence']}"
                         if "package_licence" in package_info else ""))
    lines.append(f"- Source: {'; '.join(source)}")
    if copied:
        lines.append(f"- Copied here from the model's packages: {', '.join(f'`{c}`' for c in copied)}")
    lines.append("")
    if known.get("redistribution"):
        lines += [known["redistribution"], ""]
    else:
        lines += ["Read the licence before sharing this folder or anything derived from it, and pass this file "
                  "on with it.", ""]
    return "\n".join(lines)


def write_licence_notice(gguf: str | os.PathLike | None, target: str | os.PathLike, *,
                         package: str | None = None) -> Path:
    """Keep the model's licence with its converted copy in ``target``: copy the licence files of the
    Python package ``package`` (an import name) that ships the GGUF, then write ``LICENSE-NOTICE.md``
    naming the model, its licence (GGUF ``general.license``/``.name``/``.link``, else the package's
    model card) and where it came from.

    ``gguf`` may be missing (an already-converted embedded model whose GGUF was removed): the notice then
    rests on the package alone. Every file is written atomically and the notice last, so a folder with
    the notice has its licence files too. Returns the notice's path.
    """
    from ..files import write_text_atomic, write_with_atomic

    target = Path(target)
    metadata: dict[str, object] = {}
    if gguf is not None and Path(gguf).is_file():
        try:
            metadata = gguf_general_metadata(gguf)
        except (OSError, ValueError):
            metadata = {}
    package_info, files = _package_licence_info(package) if package else ({}, [])
    known = KNOWN_LICENCES.get(str(metadata.get("general.license") or package_info.get("card_license") or "").lower(), {})
    if known.get("terms_file"):
        import importlib.util

        terms_package, _, terms_path = known["terms_file"].partition("/")
        spec = importlib.util.find_spec(terms_package)
        if spec is not None and spec.submodule_search_locations:
            terms = Path(next(iter(spec.submodule_search_locations)), terms_path)
            if terms.is_file() and terms.name not in {f.name for f in files}:
                files.insert(0, terms)
    copied = []
    for source in files:
        write_with_atomic(target / source.name, lambda tmp, source=source: shutil.copyfile(source, tmp))
        copied.append(source.name)
    gguf_name = Path(gguf).name if gguf is not None else "(unknown)"
    notice = target / LICENCE_NOTICE
    write_text_atomic(notice, licence_notice_text(metadata, package_info, gguf_name, copied))
    return notice


def ensure_licence_notice(target: Path, gguf: Path | None, *, package: str | None = None) -> None:
    """Add the licence notice to a folder converted before notices were written (once; cheap).

    A cache that cannot be written to (read-only, shared) is left as it is, with a warning: the model
    still loads.
    """
    if (target / LICENCE_NOTICE).is_file():
        return
    try:
        write_licence_notice(gguf, target, package=package)
    except OSError as exc:
        logger.warning(f"xlspt: could not add {LICENCE_NOTICE} to {target}: {first_line(exc)}")
