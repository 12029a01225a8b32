"""Model layer: the known models (:mod:`.catalog`), where and in which precision they run (:mod:`.devices`),
loading (:mod:`.loading`: Hub id, local directory, GGUF, the embedded default), GGUF conversion (:mod:`.gguf`),
the licence kept with a converted copy (:mod:`.licences`) and architecture adapters (:mod:`.adapters`)."""

from .adapters import ADAPTERS, ArchitectureAdapter, adapter_for, supported_model_types
from .catalog import EMBEDDED_DEFAULT, EMBEDDED_MODELS, STUDY_MODELS
from .devices import DType, resolve_dtype
from .loading import LoadedModel, load_model

__all__ = [
    "ADAPTERS",
    "DType",
    "EMBEDDED_DEFAULT",
    "EMBEDDED_MODELS",
    "STUDY_MODELS",
    "ArchitectureAdapter",
    "LoadedModel",
    "adapter_for",
    "load_model",
    "resolve_dtype",
    "supported_model_types",
]
