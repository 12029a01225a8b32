"""Reading SIB-200: a local directory in the release layout, or the Hugging Face Hub.

The release layout is ``<root>/<lang>/{train,dev,test}.tsv`` with the columns
``index_id``, ``category`` and ``text`` (CSV-quoted, tab-separated). The Hub dataset
``Davlan/sib200`` has one config per language and the splits ``train``,
``validation`` and ``test``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import XlsptError

#: The seven SIB-200 topics, in the order the study's label words are listed.
CATEGORIES: tuple[str, ...] = (
    "geography",
    "science/technology",
    "entertainment",
    "politics",
    "health",
    "travel",
    "sports",
)
SPLITS: tuple[str, ...] = ("train", "dev", "test")
COLUMNS: tuple[str, ...] = ("index_id", "category", "text")
DATA_ENV = "XLSPT_DATA"
HUB_DATASET = "Davlan/sib200"
_HUB_SPLIT_NAMES = {"train": "train", "dev": "validation", "test": "test"}


@dataclass
class Sib200:
    """SIB-200 from a local directory (``root``) or from a Hub dataset (``hub_dataset``).

    ``hub_dataset`` may also be a local directory holding a copy of the Hub repository.
    Splits are read once and kept in memory.
    """

    root: Path | None = None
    hub_dataset: str = HUB_DATASET
    _cache: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict, repr=False)

    @classmethod
    def resolve(cls, data: str | os.PathLike | None = None) -> "Sib200":
        """``data`` (a directory), else ``$XLSPT_DATA``, else the Hub dataset ``Davlan/sib200``."""
        source = data if data is not None else os.environ.get(DATA_ENV)
        if source is None or str(source) == "":
            return cls(root=None)
        if str(source).startswith("hf:"):
            return cls(root=None, hub_dataset=str(source)[3:])
        root = Path(source).expanduser()
        if not root.is_dir():
            raise XlsptError(
                f"SIB-200 data directory {str(root)!r} does not exist: pass --data DIR with "
                "<lang>/{train,dev,test}.tsv inside, or unset XLSPT_DATA to use the Hub"
            )
        return cls(root=root)

    @property
    def description(self) -> str:
        return str(self.root) if self.root is not None else f"hf:{self.hub_dataset}"

    def languages(self) -> list[str]:
        """Every language code this source holds, sorted."""
        if self.root is not None:
            langs = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
            if not langs:
                raise XlsptError(f"no language folders in {self.root}: expected <lang>/{{train,dev,test}}.tsv")
            return langs
        import datasets

        try:
            return sorted(datasets.get_dataset_config_names(self.hub_dataset))
        except Exception as exc:  # network, auth, missing repo: one clear line
            raise XlsptError(
                f"could not list the languages of the Hub dataset {self.hub_dataset!r} ({exc.__class__.__name__}): "
                "pass --data DIR with a local copy of SIB-200"
            ) from exc

    def split(self, lang: str, split: str) -> pd.DataFrame:
        """The rows of one split as a DataFrame with columns ``index_id, category, text``."""
        if split not in SPLITS:
            raise XlsptError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
        key = (lang, split)
        if key not in self._cache:
            frame = self._read_local(lang, split) if self.root is not None else self._read_hub(lang, split)
            self._cache[key] = _validate(frame, f"{self.description}/{lang}/{split}")
        return self._cache[key]

    def _read_local(self, lang: str, split: str) -> pd.DataFrame:
        assert self.root is not None
        lang_dir = self.root / lang
        if not lang_dir.is_dir():
            raise XlsptError(f"unknown language {lang!r}: no folder {lang_dir} (`xlspt languages` lists them)")
        path = lang_dir / f"{split}.tsv"
        if not path.is_file():
            raise XlsptError(f"missing split: {path} does not exist; SIB-200 needs {lang}/{{train,dev,test}}.tsv")
        try:
            return pd.read_csv(path, sep="\t", dtype={"category": str, "text": str}, keep_default_na=False)
        except pd.errors.EmptyDataError:
            raise XlsptError(f"{path} is empty: it needs a header index_id, category, text and rows") from None
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise XlsptError(f"{path} is not a valid SIB-200 TSV ({first}): fix or replace the file") from None

    def _read_hub(self, lang: str, split: str) -> pd.DataFrame:
        import datasets

        try:
            ds = datasets.load_dataset(self.hub_dataset, lang, split=_HUB_SPLIT_NAMES[split])
        except ValueError as exc:
            if "config" in str(exc).lower() or "builderconfig" in str(exc).lower():
                raise XlsptError(f"unknown language {lang!r} in the Hub dataset {self.hub_dataset!r}") from None
            raise XlsptError(f"could not load {lang}/{split} from {self.hub_dataset!r}: {exc}") from None
        except Exception as exc:
            raise XlsptError(
                f"could not load {lang}/{split} from the Hub dataset {self.hub_dataset!r} "
                f"({exc.__class__.__name__}): pass --data DIR with a local copy of SIB-200"
            ) from exc
        return ds.to_pandas()


def _validate(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise XlsptError(
            f"{where} lacks the column(s) {', '.join(missing)}: a SIB-200 split has the columns "
            f"{', '.join(COLUMNS)} (tab-separated, with a header)"
        )
    if frame.empty:
        raise XlsptError(f"{where} has no rows: a SIB-200 split needs at least one labelled sentence")
    frame = frame.loc[:, list(COLUMNS)].copy()
    frame["category"] = frame["category"].astype(str).str.strip()
    frame["text"] = frame["text"].astype(str)
    unknown = sorted(set(frame["category"]) - set(CATEGORIES))
    if unknown:
        raise XlsptError(
            f"{where} has the unknown category {unknown[0]!r}: SIB-200 categories are {', '.join(CATEGORIES)}"
        )
    empty = frame["text"].str.strip() == ""
    if empty.any():
        raise XlsptError(f"{where} has an empty text in row {int(empty.to_numpy().nonzero()[0][0]) + 2}: fill or remove it")
    return frame.reset_index(drop=True)
