"""Ensemble: the weighted mean of members' temperature-scaled logits, a model like any other.

Its input stacks one 3-channel crop per recipe along the channel axis; each member reads the
crop its spec's `input` names (0, the bundle's first recipe, by default), so members trained on
different crops of the same face can vote together. `facetell ensemble` builds one from bundles.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from facetell.models.registry import create_model, register_model


class EnsembleDetector(nn.Module):
    def __init__(self, members: list[dict[str, Any]]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.specs = members
        self.members = nn.ModuleList(
            create_model(m["architecture"], **m.get("model_kwargs", {})) for m in members
        )
        weights = torch.tensor([float(m.get("weight", 1.0)) for m in members])
        temperatures = torch.tensor([float(m.get("temperature", 1.0)) for m in members])
        self.inputs = [int(m.get("input", 0)) for m in members]
        self.register_buffer("weights", weights / weights.sum(), persistent=False)
        self.register_buffer("temperatures", temperatures, persistent=False)

    @property
    def onnx_exportable(self) -> bool:
        return all(getattr(m, "onnx_exportable", True) for m in self.members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.stack(
            [
                member(x[:, 3 * index : 3 * index + 3])
                for member, index in zip(self.members, self.inputs, strict=True)
            ],
            dim=1,
        )
        return self.combine(logits)

    def combine(self, logits: torch.Tensor) -> torch.Tensor:
        """The members' (B, M) logits to the ensemble's: their weighted temperature-scaled mean."""
        return (logits / self.temperatures * self.weights).sum(dim=1)

    @property
    def has_embedding(self) -> bool:
        return all(getattr(member, "has_embedding", False) for member in self.members)

    def logit_and_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The logit and the members' unit features side by side, scaled by 1/sqrt(M) so that
        it has unit length too and a dot product is the mean of the members' cosines."""
        pairs = [
            member.logit_and_embedding(x[:, 3 * index : 3 * index + 3])
            for member, index in zip(self.members, self.inputs, strict=True)
        ]
        logits = torch.stack([logit for logit, _ in pairs], dim=1)
        embedding = torch.cat([features for _, features in pairs], dim=1) / len(pairs) ** 0.5
        return self.combine(logits), embedding


@register_model(
    "ensemble",
    summary="weighted mean of member bundles' temperature-scaled logits (`facetell ensemble`); "
    "the shipped model",
)
def build_ensemble(members: list[dict[str, Any]]) -> EnsembleDetector:
    return EnsembleDetector(members)
