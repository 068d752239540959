"""Models behind one registry. Importing this package registers every model."""

from models import conv, conv_reference, ffn, lif, lif_reference, peers, recurrent_ann, rsnn, rsnn_reference, snn, snn_reference  # noqa: F401  (registration side effect)
from models.registry import (
    INFO,
    MODELS,
    NOTES,
    ORIGIN,
    UNAVAILABLE,
    ModelInfo,
    ModelSpec,
    SpecError,
    available,
    build,
    model_class,
    parse_spec,
    register,
)

__all__ = [
    "INFO",
    "MODELS",
    "NOTES",
    "ORIGIN",
    "UNAVAILABLE",
    "ModelInfo",
    "model_class",
    "ModelSpec",
    "SpecError",
    "available",
    "build",
    "parse_spec",
    "register",
]
