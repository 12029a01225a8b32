"""Labelled data of any task: SIB-200, or the user's own CSV, TSV or JSON Lines files, or a Hub dataset.

Every source is read into the same form: per language and split (``train``, ``dev``, ``test``)
a table with the columns ``index_id``, ``label`` and ``text``. What the user names in
:class:`DataConfig` says where each of those comes from:

- text and label columns (``text_column``, ``label_column``; SIB-200's ``category`` is found
  when the label column is left at ``label``);
- languages: one folder or file per language (``<root>/<lang>/...``, ``<root>/<lang>.csv``), a
  language column, or else the whole source is one language (``language``, the training
  language by default);
- splits: separate files (``train``, ``dev`` or ``validation``, ``test``), a split column, or
  else a seeded split stratified by label (70/10/20 %, SIB-200's proportions) of each language.

SIB-200's own files (columns ``index_id, category, text``) keep its seven categories in the
study's order and refuse any other category; other data keeps its own labels, sorted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import ConfigError, XlsptError
from ..progress import library_bars_off_terminal
from .reading import as_label, data_files, read_table, require_columns, row_number, stratified_split
from .sib200 import CATEGORIES, HUB_DATASET, RELEASE

SPLITS: tuple[str, ...] = ("train", "dev", "test")
#: Other names of a split, in files, split columns and Hub datasets.
SPLIT_ALIASES = {"train": "train", "dev": "dev", "validation": "dev", "valid": "dev", "val": "dev", "test": "test"}
DATA_ENV = "XLSPT_DATA"
COLUMNS = ("index_id", "label", "text")
_SIB200_LABEL = "category"
#: A file named like a language code (eng_Latn, fra, de) holds that language.
_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}(?:_[A-Z][a-z]{3})?")


@dataclass(frozen=True)
class DataConfig:
    """Where labelled data comes from and how to read it."""

    source: str | None = field(default=None, metadata={"help": (
        "a SIB-200-style directory (<lang>/{train,dev,test}.tsv), a CSV/TSV/JSONL file or a directory of them, "
        "or hf:DATASET[:CONFIG]; default $XLSPT_DATA, else the Hub dataset Davlan/sib200")})
    text_column: str = field(default="text", metadata={"help": "the column holding the text"})
    label_column: str = field(default="label", metadata={"help": "the column holding the label (SIB-200's category is found too)"})
    language_column: str | None = field(default=None, metadata={"help": "a column naming each row's language"})
    split_column: str | None = field(default=None, metadata={"help": "a column naming each row's split (train, dev/validation, test)"})
    language: str = field(default="eng_Latn", metadata={"help": "the language of a source with no language column or folders"})
    split_seed: int = field(default=0, metadata={"help": "seeds the stratified split of a source without splits"})
    split_fractions: tuple[float, float, float] = field(default=(0.7, 0.1, 0.2), metadata={
        "help": "train, dev and test shares of that split"})

    def __post_init__(self) -> None:
        for name in ("text_column", "label_column"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ConfigError(name, "must name a column")
        if self.language_column is not None and self.language_column == self.split_column:
            raise ConfigError("split_column", "is the language column too: name two different columns")
        if len(self.split_fractions) != 3 or min(self.split_fractions) <= 0 or abs(sum(self.split_fractions) - 1) > 1e-6:
            raise ConfigError("split_fractions", f"must be three positive shares summing to 1 (got {self.split_fractions})")

    def resolved(self) -> "DataConfig":
        """This config with no ``source`` given filled in from ``$XLSPT_DATA`` (when set and not empty).

        The one place the environment is read: a run config resolves its data here before its id
        is computed, so data taken from the environment and data named explicitly are one run.
        """
        from_environment = os.environ.get(DATA_ENV)
        return dataclasses.replace(self, source=from_environment) if self.source is None and from_environment else self


class TaskData:
    """Labelled data read through a :class:`DataConfig`; splits are read once and kept in memory."""

    def __init__(self, config: DataConfig | None = None) -> None:
        self.config = config or DataConfig()
        source = self.config.source
        self.hub_dataset: str | None = None
        self.hub_config: str | None = None
        self.root: Path | None = None
        if source is None or source == "":
            self.hub_dataset = HUB_DATASET
        elif source.startswith("hf:"):
            name, _, config_name = source[3:].partition(":") if not Path(source[3:]).exists() else (source[3:], "", "")
            self.hub_dataset, self.hub_config = name, config_name or None
        else:
            self.root = Path(source).expanduser()
            if not self.root.exists():
                raise XlsptError(
                    f"data {str(self.root)!r} does not exist: pass --data with a SIB-200 directory, a CSV/TSV/JSONL "
                    "file or a directory of them (or unset XLSPT_DATA to use the Hub)"
                )
        self._languages: list[str] | None = None
        self._frames: dict[str, dict[str, pd.DataFrame]] = {}
        self._whole: pd.DataFrame | dict[str, pd.DataFrame] | None = None
        self.sib200_format: bool | None = None
        self._config_languages = False  # a Hub dataset with one config per language (SIB-200's layout)
        self._hub_tables: dict[tuple, pd.DataFrame | None] = {}

    @classmethod
    def resolve(cls, data: "str | os.PathLike | DataConfig | None" = None, **options) -> "TaskData":
        """``data`` (a path, ``hf:ID`` or a :class:`DataConfig`), else ``$XLSPT_DATA``, else the Hub's SIB-200.

        ``options`` are further :class:`DataConfig` fields (``label_column="topic"``...).
        """
        if isinstance(data, DataConfig):
            data = data.resolved()
            return cls(dataclasses.replace(data, **options) if options else data)
        if data is None:
            return cls(DataConfig(**options).resolved())
        return cls(DataConfig(source=str(data) or None, **options))

    @property
    def description(self) -> str:
        """Where the data is read from, for this machine's messages (a local path stays whole)."""
        if self.root is not None:
            return str(self.root)
        return f"hf:{self.hub_dataset}" + (f":{self.hub_config}" if self.hub_config else "")

    @property
    def source_name(self) -> str:
        """What the data is, for files others read (sidecars, model cards), never a local path: a Hub dataset id
        (``hf:OWNER/NAME[:CONFIG]``), SIB-200 (:data:`~xlspt.data.sib200.RELEASE`), or a file or folder's name.

        Whether a local folder is SIB-200 is known once a split has been read (its columns and categories).
        """
        if self.root is None:
            hub = Path(self.hub_dataset).name if Path(self.hub_dataset).exists() else self.hub_dataset
            return f"hf:{hub}" + (f":{self.hub_config}" if self.hub_config else "")
        if self.sib200_format and self.root.is_dir():
            return RELEASE
        return self.root.resolve().name

    # ------------------------------------------------------------ the public reading interface

    def languages(self) -> list[str]:
        """Every language code this source holds, sorted."""
        if self._languages is None:
            self._languages = sorted(self._list_languages())
            if not self._languages:
                raise XlsptError(f"no data found in {self.description}: expected CSV, TSV or JSONL files (or SIB-200's layout)")
        return self._languages

    def split(self, lang: str, split: str) -> pd.DataFrame:
        """The rows of one split as a DataFrame with columns ``index_id, label, text``."""
        if split not in SPLITS:
            raise XlsptError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
        if lang not in self._frames:
            if lang not in self.languages():
                raise XlsptError(f"unknown language {lang!r} in {self.description} (`xlspt languages --data ...` lists them)")
            self._frames[lang] = {}
        frames = self._frames[lang]
        if split not in frames:
            frames.update(self._read_language(lang, split))
            if split not in frames:
                raise XlsptError(f"missing split: {self.description} has no {split} split for {lang}; give it a "
                                 f"{split} file, rows with that value in the split column, or one file to split")
        return frames[split]

    def labels(self, language: str | None = None) -> tuple[str, ...]:
        """The class order: SIB-200's seven categories, or the sorted labels of ``language``'s train split."""
        frame = self.split(language or self.config.language, "train")
        present = set(frame["label"])
        if self.sib200_format:  # the study's order; a subset of the topics keeps only those present
            labels = tuple(c for c in CATEGORIES if c in present)
        else:
            labels = tuple(sorted(present))
        folded: dict[str, str] = {}
        for label in labels:
            other = folded.setdefault(label.casefold(), label)
            if other != label:
                raise XlsptError(f"the labels {other!r} and {label!r} of {self.description} differ only in case: "
                                 "make them one label (or rename one) in the data")
        if len(labels) < 2:
            raise XlsptError(f"the {language or self.config.language} train split of {self.description} has one class only "
                             f"({labels[0]!r}): a classifier needs at least two labels")
        return labels

    def target_languages(self, spec) -> list[str]:
        """``--langs`` resolved against this data: ``52`` (the default) means the study's languages for SIB-200
        and every language of any other data, which has its own."""
        from .languages import ALL_SET, STUDY_SET, resolve_languages

        if isinstance(spec, str) and spec.strip() == STUDY_SET:
            if self.sib200_format is None:
                try:
                    self.split(self.config.language, "train")  # tells whether this is SIB-200's own format
                except XlsptError:
                    pass
            if self.sib200_format is False:
                spec = ALL_SET
        return resolve_languages(spec if isinstance(spec, str) else list(spec), self.languages())

    def checksum(self, parts) -> str:
        """SHA-256 of the rows of ``parts`` (``(language, split)`` pairs, in order) as read: ids, labels and texts.

        Two runs that report the same checksum read the same examples, whatever the files looked like.
        """
        digest = hashlib.sha256()
        for lang, split in parts:
            frame = self.split(lang, split)
            digest.update(f"{lang}/{split}:{len(frame)}\n".encode())
            digest.update(frame.to_csv(index=False).encode("utf-8"))
        return digest.hexdigest()

    # ------------------------------------------------------------ sources

    def _list_languages(self) -> list[str]:
        if self.root is None:
            return self._hub_languages()
        if self.config.language_column:
            whole = self._whole_table()
            tables = whole.values() if isinstance(whole, dict) else [whole]
            return sorted({lang for table in tables for lang in table[self.config.language_column]})
        layout, entries = self._layout()
        if layout in ("folders", "files"):
            return list(entries)
        return [self.config.language]

    def _layout(self) -> tuple[str, dict[str, Path]]:
        """``folders`` (a folder per language), ``files`` (a file per language), ``splits`` (split files) or ``file``."""
        root = self.root
        assert root is not None
        if root.is_file():
            return "file", {"": root}
        files = {p.stem: p for p in data_files(root)}
        if files and all(stem.lower() in SPLIT_ALIASES for stem in files):
            return "splits", files
        # Only folders holding data are languages: not runs/ or hub/ that a command wrote beside the data.
        folders = {p.name: p for p in sorted(root.iterdir())
                   if p.is_dir() and not p.name.startswith(".") and data_files(p)}
        if folders and not self.config.language_column:
            return "folders", folders
        if len(files) == 1 and not _LANGUAGE_CODE.fullmatch(next(iter(files))):
            return "file", files  # tickets.csv: one dataset in the training language, not a language called "tickets"
        if files and not self.config.language_column:
            return "files", files
        if len(files) == 1:
            return "file", files
        raise XlsptError(f"{root} holds neither language folders nor CSV/TSV/JSONL files of one dataset: "
                         "use <lang>/{train,dev,test}.tsv, {train,dev,test}.csv, <lang>.csv, or one file")

    def _read_language(self, lang: str, split: str) -> dict[str, pd.DataFrame]:
        """The splits of one language that reading ``split`` yields (some sources yield all three at once)."""
        if self.root is None:
            return self._hub_splits(lang, split)
        if self.config.language_column:
            whole = self._whole_table()
            table = whole if isinstance(whole, pd.DataFrame) else None
            if table is not None:
                return self._split_table(table[table[self.config.language_column] == lang], f"{self.description} ({lang})")
            rows = {s: t[t[self.config.language_column] == lang] for s, t in whole.items()}
            return self._complete({s: self._clean(t, f"{self.description}/{s} ({lang})") for s, t in rows.items() if len(t)},
                                  f"{self.description} ({lang})")
        layout, entries = self._layout()
        if layout == "file":
            return self._split_table(self._read_file(next(iter(entries.values()))), str(self.root))
        if layout == "files":
            return self._split_table(self._read_file(entries[lang]), str(entries[lang]))
        folder = entries[lang] if layout == "folders" else self.root
        found = data_files(folder)
        named = [SPLIT_ALIASES.get(p.stem.lower()) for p in found]
        doubled = sorted({n for n in named if n is not None and named.count(n) > 1})
        if doubled:
            raise XlsptError(f"{folder} holds several files of the {doubled[0]} split: keep one "
                             f"({', '.join(p.name for p, n in zip(found, named) if n == doubled[0])})")
        if any(n is not None for n in named) and None in named:
            raise XlsptError(f"{folder} mixes split files with {found[named.index(None)].name}: name every file train, dev "
                             "or test, or keep one file with a split column")
        if None in named and len(found) > 1:
            raise XlsptError(f"{folder} holds several data files none of which is named train, dev or test: "
                             "name them by split, or keep one file with a split column")
        files = dict(zip(named, found))
        if any(name is not None for name in files):
            if "dev" not in files and "train" in files and split in ("train", "dev"):  # dev is carved out of train
                return self._complete({"train": self._clean(self._read_file(files["train"]), str(files["train"]))}, str(folder))
            path = files.get(split)  # one split at a time: evaluating reads only test splits
            return {split: self._clean(self._read_file(path), str(path))} if path is not None else {}
        if len(files) == 1:  # one file of all splits
            path = next(iter(files.values()))
            return self._split_table(self._read_file(path), str(path))
        raise XlsptError(f"missing split: no {split}.tsv (or .csv, .jsonl) in {folder}")

    def _complete(self, splits: dict[str, pd.DataFrame], where: str) -> dict[str, pd.DataFrame]:
        """Splits read from files or a Hub dataset; a missing dev split is carved out of train (seeded, stratified)."""
        if "dev" in splits or "train" not in splits:
            return splits
        train_share, dev_share = self.config.split_fractions[:2]
        carved = stratified_split(splits["train"], {"train": train_share, "dev": dev_share}, self.config.split_seed, where)
        return {**splits, **carved}

    def _whole_table(self) -> pd.DataFrame | dict[str, pd.DataFrame]:
        """All rows of a source with a language column: one table, or one per split file."""
        if self._whole is None:
            layout, entries = self._layout()
            if layout == "splits":
                self._whole = {SPLIT_ALIASES[stem.lower()]: self._read_file(p) for stem, p in entries.items()}
                tables = list(self._whole.values())
            else:
                self._whole = self._read_file(next(iter(entries.values())))
                tables = [self._whole]
            for table in tables:
                require_columns(table, [self.config.language_column], self.description, "--language-column")
                table[self.config.language_column] = table[self.config.language_column].astype(str).str.strip()
        return self._whole

    def _read_file(self, path: Path) -> pd.DataFrame:
        return read_table(path, self.config.text_column, self.config.label_column)

    def _split_table(self, table: pd.DataFrame, where: str) -> dict[str, pd.DataFrame]:
        """A table of all splits: by its split column, else a seeded split stratified by label."""
        column = self.config.split_column
        if column:
            require_columns(table, [column], where, "--split-column")
            names = table[column].astype(str).str.strip().str.lower()
            unknown = sorted(set(names) - set(SPLIT_ALIASES))
            if unknown:
                raise XlsptError(f"{where} has the split {unknown[0]!r} in column {column!r}: use train, dev (or validation) and test")
            names = names.map(SPLIT_ALIASES)
            return self._complete({s: self._clean(table[names == s], f"{where} ({s})") for s in SPLITS if (names == s).any()}, where)
        clean = self._clean(table, where)
        return stratified_split(clean, dict(zip(SPLITS, self.config.split_fractions)), self.config.split_seed, where)

    def _clean(self, frame: pd.DataFrame, where: str) -> pd.DataFrame:
        """Map the source's columns to ``index_id, label, text`` and check every row."""
        text, label = self.config.text_column, self.config.label_column
        if label not in frame.columns and label == "label" and _SIB200_LABEL in frame.columns:
            label = _SIB200_LABEL
        require_columns(frame, [text, label], where, None)
        sib200 = label == _SIB200_LABEL and "index_id" in frame.columns
        self.sib200_format = sib200 if self.sib200_format is None else self.sib200_format and sib200
        if frame.empty:
            raise XlsptError(f"{where} has no rows: it needs at least one labelled text")
        index = frame["index_id"] if "index_id" in frame.columns else frame.get("_row", pd.Series(range(len(frame)), index=frame.index))
        lines = frame["_row"] + frame.attrs.get("_header_lines", 1) + 1 if "_row" in frame.columns else range(2, len(frame) + 2)
        out = pd.DataFrame({
            "_line": list(lines),
            "index_id": pd.to_numeric(index, errors="coerce"),
            "label": frame[label].map(as_label),
            "text": frame[text].map(lambda v: "" if v is None or (isinstance(v, float) and v != v) else str(v)),
        })
        if out["index_id"].isna().any():
            out["index_id"] = frame["_row"].to_numpy() if "_row" in frame.columns else range(len(frame))
        out["index_id"] = out["index_id"].astype(int)
        empty_label = out["label"] == ""
        if empty_label.any():
            raise XlsptError(f"{where} has an empty label in row {row_number(out, empty_label)}: fill or remove it")
        if sib200:
            unknown = sorted(set(out["label"]) - set(CATEGORIES))
            if unknown:
                raise XlsptError(f"{where} has the unknown category {unknown[0]!r}: SIB-200 categories are {', '.join(CATEGORIES)}")
        empty = out["text"].str.strip() == ""
        if empty.any():
            raise XlsptError(f"{where} has an empty text in row {row_number(out, empty)}: fill or remove it")
        return out.drop(columns="_line").reset_index(drop=True)

    # ------------------------------------------------------------ the Hugging Face Hub

    def _hub_languages(self) -> list[str]:
        import datasets

        if self.config.language_column:  # languages of every split (a target may be in test only)
            tables = [t for t in (self._hub_load(self.hub_config, name) for name in SPLITS) if t is not None]
            if not tables:
                raise XlsptError(f"the Hub dataset {self.description} has no train, dev or test split")
            for table in tables:
                require_columns(table, [self.config.language_column], self.description, "--language-column")
            return sorted({v for t in tables for v in t[self.config.language_column].astype(str).str.strip()})
        if self.hub_config:
            return [self.config.language]
        try:
            configs = datasets.get_dataset_config_names(self.hub_dataset)
        except Exception as exc:  # network, auth, missing repo: one clear line
            raise XlsptError(f"could not list the configs of the Hub dataset {self.hub_dataset!r} ({exc.__class__.__name__}): "
                             "pass --data with a local copy") from exc
        # Several configs are languages (SIB-200's layout); a single one (imdb's plain_text) is just the dataset.
        self._config_languages = len(configs) > 1
        return list(configs) if self._config_languages else [self.config.language]

    def _hub_splits(self, lang: str, split: str) -> dict[str, pd.DataFrame]:
        config = self.hub_config or (lang if self._config_languages else None)
        tables = {name: self._hub_load(config, name) for name in SPLITS}
        if self.config.language_column:
            tables = {name: t[t[self.config.language_column].astype(str).str.strip() == lang] if t is not None else None
                      for name, t in tables.items()}
            tables = {name: t if t is not None and len(t) else None for name, t in tables.items()}
        where = f"{self.description}/{lang}"
        if tables["train"] is not None and tables["dev"] is None and tables["test"] is None:
            return self._split_table(tables["train"], where)  # one split only: split it like a single file
        return self._complete({name: self._clean(t, f"{where}/{name}") for name, t in tables.items() if t is not None}, where)

    def _hub_load(self, config: str | None, split: str) -> pd.DataFrame | None:
        """One split of a Hub dataset as a table (class-label columns as their names), read once."""
        import datasets

        key = (config, split)
        if key in self._hub_tables:
            return self._hub_tables[key]
        frame = None
        library_bars_off_terminal()
        for name in [n for n, s in SPLIT_ALIASES.items() if s == split]:
            try:
                ds = datasets.load_dataset(self.hub_dataset, config, split=name)
            except ValueError as exc:
                text = str(exc).lower()
                if "split" in text and ("unknown" in text or "should be one of" in text or "not found" in text):
                    continue
                if "config" in text:
                    raise XlsptError(f"unknown language or config {config!r} in the Hub dataset {self.hub_dataset!r}") from None
                raise XlsptError(f"could not load {config or ''} {split} from {self.hub_dataset!r}: {str(exc).splitlines()[0]}") from None
            except Exception as exc:
                raise XlsptError(
                    f"could not load {split} from the Hub dataset {self.hub_dataset!r} ({exc.__class__.__name__}): "
                    "pass --data with a local copy"
                ) from exc
            frame = ds.to_pandas()
            for column, feature in ds.features.items():  # ClassLabel ids -> their names (imdb's 0/1 -> neg/pos)
                if isinstance(feature, datasets.ClassLabel) and column in frame:
                    frame[column] = frame[column].map(lambda i, f=feature: f.int2str(int(i)) if i is not None and i >= 0 else None)
            frame["_row"] = range(len(frame))
            break
        self._hub_tables[key] = frame
        return frame


#: SIB-200 is read like any other data; the name stays for the study's code and users' scripts.
Sib200 = TaskData
