"""Model layer: loading (Hub id, local directory, GGUF, the embedded default) and architecture adapters."""

from .adapters import ADAPTERS, ArchitectureAdapter, adapter_for, supported_model_types
from .loading import EMBEDDED_DEFAULT, EMBEDDED_MODELS, STUDY_MODELS, LoadedModel, load_model

__all__ = [
    "ADAPTERS",
    "EMBEDDED_DEFAULT",
    "EMBEDDED_MODELS",
    "STUDY_MODELS",
    "ArchitectureAdapter",
    "LoadedModel",
    "adapter_for",
    "load_model",
    "supported_model_types",
]
