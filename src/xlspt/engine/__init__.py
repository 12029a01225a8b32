"""The forward engine: tokenizing for the prompt layout, batching, and the passes that read out
the hidden state at the last prompt slot."""

from .batching import DEFAULT_MAX_LENGTH, batches_by_length, encode_texts, left_pad, shuffled_batches
from .naive import NaiveEngine

__all__ = ["DEFAULT_MAX_LENGTH", "NaiveEngine", "batches_by_length", "encode_texts", "left_pad", "shuffled_batches"]
