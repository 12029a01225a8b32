"""Label a corpus with many saved classifiers in one pass (``xlspt label``): Parquet, JSON Lines, CSV/TSV or
plain text shards in, one labelled shard out per input shard, resumable, here or on a Ray cluster."""

from .config import CorpusExecutor, LabelConfig, OutputFormat
from .labelling import MANIFEST, CorpusLabeller, LabelOutcome, label_corpus

__all__ = ["MANIFEST", "CorpusExecutor", "CorpusLabeller", "LabelConfig", "LabelOutcome", "OutputFormat", "label_corpus"]
