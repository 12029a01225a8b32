"""Model layer: loading (Hub id, local directory, GGUF, the embedded default) and architecture adapters."""

from .adapters import ADAPTERS, ArchitectureAdapter, adapter_for, supported_model_types
from .loading import (
    DType,
    EMBEDDED_DEFAULT,
    EMBEDDED_MODELS,
    STUDY_MODELS,
    LoadedModel,
    load_model,
    resolve_dtype,
)

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
