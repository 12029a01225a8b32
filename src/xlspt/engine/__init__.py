"""The forward engine: tokenizing for the prompt layout, batching, and the passes that read out
the hidden state at the last prompt slot."""

from .batching import batches_by_length, encode_texts, left_pad, shuffled_batches
from .cached import CachedTextEngine, TextStates
from .naive import NaiveEngine
from .options import DEFAULT_MAX_LENGTH, Engine, ReadoutConfig, SpecialTokens
from .passes import PromptPass


def make_engine(loaded, name: Engine | str = Engine.AUTO, *, model_trains: bool = False, encode_batch_size: int = 32):
    """The engine that trains: see :meth:`Engine.for_training` (the choice is checked there, once)."""
    if Engine(name).for_training(model_trains) is Engine.NAIVE:
        return NaiveEngine(loaded)
    return CachedTextEngine(loaded, encode_batch_size=encode_batch_size)


__all__ = ["DEFAULT_MAX_LENGTH", "Engine", "ReadoutConfig", "SpecialTokens", "CachedTextEngine", "NaiveEngine", "PromptPass", "TextStates", "make_engine", "batches_by_length", "encode_texts", "left_pad", "shuffled_batches"]
