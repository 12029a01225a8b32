"""How ``xlspt label`` reads a corpus and writes its labels: one config, each default stated once."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum

from ..classifiers.scoring import check_answer_options
from ..data.languages import canonical_language
from ..errors import ConfigError


class OutputFormat(str, Enum):
    """How each output shard is written."""

    PARQUET = "parquet"
    JSONL = "jsonl"

    @property
    def suffix(self) -> str:
        return {"parquet": ".parquet", "jsonl": ".jsonl"}[self.value]


class CorpusExecutor(str, Enum):
    """Where the shards are labelled."""

    LOCAL = "local"
    RAY = "ray"


@dataclass(frozen=True)
class LabelConfig:
    """What ``xlspt label`` reads and writes (the command line maps each field to its flag: ``text_column`` ->
    ``--text-column``). Every field but ``executor``, ``workers`` and ``batch_size`` is part of what an output
    folder holds: a rerun with another value is refused rather than mixed into old outputs."""

    text_column: str = field(default="text", metadata={"help": "the column holding the texts (plain text files: each line is a text)"})
    id_column: str | None = field(default=None, metadata={
        "help": "a column of unique row ids copied to the output (default: the source file and row number)"})
    lang_column: str | None = field(default=None, metadata={
        "help": "a column of language codes (fra_Latn, fr): calibrations that read a language's script use it"})
    lang: str | None = field(default=None, metadata={"help": "the language of every text, when the corpus has no language column"})
    output_format: OutputFormat = field(default=OutputFormat.PARQUET, metadata={"help": "each output shard's format"})
    chunk_rows: int = field(default=1024, metadata={
        "help": "rows read, scored and written at a time; batch calibration estimates its prior per chunk and language"})
    top_k: int | None = field(default=None, metadata={"help": "also give each task's K most probable labels with their probabilities"})
    min_confidence: float | None = field(default=None, metadata={
        "help": "answer 'abstain' where the most probable label's probability is below P"})
    batch_size: int = field(default=32, metadata={"help": "texts per forward pass of the model"})
    executor: CorpusExecutor = field(default=CorpusExecutor.LOCAL, metadata={
        "help": "local: shards one after another in this process; ray: a pool of Ray actors, each loading the model once"})
    workers: int = field(default=0, metadata={
        "help": "with --executor ray: actors in the pool (0: one per GPU where the cluster has GPUs, else one per node)"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "output_format", OutputFormat(self.output_format))
        object.__setattr__(self, "executor", CorpusExecutor(self.executor))
        if not self.text_column:
            raise ConfigError("text_column", "name the column that holds the texts")
        if self.lang and self.lang_column:
            raise ConfigError("lang", "give the language of every text (--lang) or a column of languages (--lang-column), not both")
        for name in ("chunk_rows", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(name, f"must be at least 1 (got {getattr(self, name)})")
        if self.lang:  # `fr` is fra_Latn: the script content-free calibration reads must not be lost
            object.__setattr__(self, "lang", canonical_language(self.lang))
        check_answer_options(self.top_k, self.min_confidence)
        if self.workers < 0:
            raise ConfigError("workers", f"must be 0 (one per node or GPU) or more (got {self.workers})")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def settings(self) -> dict:
        """What an output folder's labels depend on (its manifest keeps them; a rerun must match)."""
        return {"text_column": self.text_column, "id_column": self.id_column, "lang_column": self.lang_column,
                "lang": self.lang, "output_format": self.output_format.value, "chunk_rows": self.chunk_rows,
                "top_k": self.top_k, "min_confidence": self.min_confidence}
