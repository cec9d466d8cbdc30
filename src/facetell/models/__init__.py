"""Model registry and the detector families; importing this package registers them all."""

from facetell.models import efficientnet, ensemble, mobilenet, npr, probe, spectrum
from facetell.models.registry import (
    BadModelArguments,
    ModelEntry,
    UnknownModel,
    create_model,
    list_models,
    model_entries,
    register_model,
)

__all__ = [
    "BadModelArguments",
    "ModelEntry",
    "UnknownModel",
    "create_model",
    "efficientnet",
    "ensemble",
    "list_models",
    "mobilenet",
    "model_entries",
    "npr",
    "probe",
    "register_model",
    "spectrum",
]
