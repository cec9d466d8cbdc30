"""The closed-form fit shared by linear models on fixed features (spectrum, probe).

scikit-learn fits the logistic regression; its standardisation and coefficients are copied into
the module's own buffers and layer, so the fitted model is an ordinary `nn.Module` that saves to
safetensors and exports to ONNX.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class StandardisedLogistic:
    """Mixin for modules with `feature_mean`/`feature_std` buffers and a `linear` layer.

    the trainer's closed_form phase calls `fit` with the features of every training view, and
    `forward` of each model is `read_out(self.features(x))`.
    """

    feature_mean: torch.Tensor
    feature_std: torch.Tensor
    linear: nn.Linear

    def read_out(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from precomputed features: standardise, then the fitted linear unit."""
        return self.linear((features - self.feature_mean) / self.feature_std).squeeze(1)

    def fit(self, features: np.ndarray, targets: np.ndarray, *, c: float = 1.0) -> None:
        """Fit standardisation and an L2 logistic regression (inverse strength `c`) in place."""
        mean = features.mean(axis=0)
        std = features.std(axis=0) + 1e-6
        from sklearn.linear_model import LogisticRegression  # ~0.8 s to import: fitting only

        regression = LogisticRegression(C=c, max_iter=2000)
        regression.fit((features - mean) / std, targets)
        with torch.no_grad():
            self.feature_mean.copy_(torch.from_numpy(mean).float())
            self.feature_std.copy_(torch.from_numpy(std).float())
            self.linear.weight.copy_(torch.from_numpy(regression.coef_).float())
            self.linear.bias.copy_(torch.from_numpy(regression.intercept_).float())
