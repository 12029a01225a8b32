"""The forward engine: tokenizing for the prompt layout, batching, and the passes that read out
the hidden state at the last prompt slot."""

from .batching import DEFAULT_MAX_LENGTH, batches_by_length, encode_texts, left_pad, shuffled_batches
from .cached import CachedTextEngine, TextStates
from .naive import NaiveEngine

ENGINES = ("auto", "cached", "naive")


def make_engine(loaded, name: str = "auto", *, model_trains: bool = False, encode_batch_size: int = 32):
    """``auto`` is the cached-text engine, unless the model's weights train (then text states change)."""
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}: use one of {', '.join(ENGINES)}")
    if name == "naive" or (name == "auto" and model_trains):
        return NaiveEngine(loaded)
    if model_trains:
        raise ValueError("the cached engine needs a frozen model: use engine 'naive' or 'auto' with --train-model")
    return CachedTextEngine(loaded, encode_batch_size=encode_batch_size)

__all__ = ["DEFAULT_MAX_LENGTH", "ENGINES", "CachedTextEngine", "NaiveEngine", "TextStates", "make_engine", "batches_by_length", "encode_texts", "left_pad", "shuffled_batches"]
