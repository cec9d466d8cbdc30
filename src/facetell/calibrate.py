"""Calibration: turn a model's logit into an honest probability and a three-way verdict.

`calibration.json` in a bundle holds a temperature (p = sigmoid(logit / T)), the decision
threshold on p, and the "uncertain" band around it where held-out accuracy was too low to
answer. A bundle without one still works, with T = 1 and a default band, and says so.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

DEFAULT_BAND = (0.35, 0.65)


@dataclass(frozen=True)
class Calibration:
    temperature: float = 1.0
    threshold: float = 0.5
    uncertain_band: tuple[float, float] = DEFAULT_BAND
    fitted: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> Calibration:
        if not raw:
            return cls()
        return cls(
            temperature=float(raw["temperature"]),
            threshold=float(raw["threshold"]),
            uncertain_band=tuple(raw["uncertain_band"]),  # type: ignore[arg-type]
            fitted=True,
            details={k: v for k, v in raw.items()
                     if k not in ("temperature", "threshold", "uncertain_band")},
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        raw.pop("fitted")
        details = raw.pop("details")
        return {**raw, "uncertain_band": list(self.uncertain_band), **details}

    def probability(self, logit: float) -> float:
        """P(ai) after temperature scaling; numerically safe for large logits."""
        z = logit / self.temperature
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)

    def verdict(self, p_ai: float, threshold: float | None = None) -> str:
        """'ai', 'real', or 'uncertain' inside the band (a user threshold moves the band too)."""
        cut = self.threshold if threshold is None else threshold
        low, high = self.uncertain_band
        shift = cut - self.threshold
        if low + shift <= p_ai <= high + shift:
            return "uncertain"
        return "ai" if p_ai >= cut else "real"
