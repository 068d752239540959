"""Models behind one registry. Importing this package registers every model."""

from models import ffn, snn, snn_reference  # noqa: F401  (registration side effect)
from models.registry import INFO, MODELS, ModelInfo, ModelSpec, SpecError, available, build, parse_spec, register

__all__ = ["INFO", "MODELS", "ModelInfo", "ModelSpec", "SpecError", "available", "build", "parse_spec", "register"]
