"""Model registry and the detector families; importing this package registers them all."""

from facetell.models import efficientnet, ensemble, mobilenet, npr, probe, spectrum
from facetell.models.registry import UnknownModel, create_model, list_models, register_model

__all__ = [
    "UnknownModel",
    "create_model",
    "efficientnet",
    "ensemble",
    "list_models",
    "mobilenet",
    "npr",
    "probe",
    "register_model",
    "spectrum",
]
