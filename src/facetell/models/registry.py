"""One dict of model builders by name, in the spirit of timm's `register_model`/`create_model`."""

from __future__ import annotations

import difflib
import fnmatch
import importlib.util
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from torch import nn

from facetell.errors import FacetellError

Builder = TypeVar("Builder", bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture: its builder, one line on what it is, and the importable
    package that carries the ImageNet file `pretrained=True` needs (None: trained from scratch
    or fitted, nothing to install)."""

    name: str
    builder: Callable[..., nn.Module]
    summary: str
    weights_package: str | None = None

    @property
    def weights_installed(self) -> bool | None:
        if self.weights_package is None:
            return None
        return importlib.util.find_spec(self.weights_package) is not None


_REGISTRY: dict[str, ModelEntry] = {}


class UnknownModel(FacetellError):
    """A model name that is not registered; the message suggests the closest names."""


class BadModelArguments(FacetellError, ValueError):
    """`model_kwargs` a builder rejects (unknown name, value out of range): a config mistake."""


def register_model(
    name: str, *, summary: str, weights_package: str | None = None
) -> Callable[[Builder], Builder]:
    """Decorator: make `create_model(name, **kwargs)` call the decorated builder."""

    def decorate(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(name, builder, summary, weights_package)
        return builder

    return decorate


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style pattern, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def model_entries(pattern: str = "*") -> list[ModelEntry]:
    """What `facetell models` shows: each matching architecture's entry, sorted by name."""
    return [_REGISTRY[name] for name in list_models(pattern)]


def create_model(name: str, **kwargs: object) -> nn.Module:
    """Build a registered model; every model maps a (B, 3, H, W) float tensor to (B,) logits."""
    try:
        builder = _REGISTRY[name].builder
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownModel(
            f"unknown model {name!r}{hint} (registered: {', '.join(list_models())})"
        ) from None
    accepted = inspect.signature(builder).parameters
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    if unknown := [] if open_ended else [key for key in kwargs if key not in accepted]:
        # a recipe's kwargs kept under --set model=OTHER, or a typo: name what the model takes
        raise BadModelArguments(
            f"model {name!r} takes no {', '.join(map(repr, unknown))} in model_kwargs (it takes "
            f"{', '.join(accepted) or 'none'}; --set model_kwargs={{...}} replaces the config's)"
        )
    try:
        return builder(**kwargs)
    except BadModelArguments:
        raise  # an ensemble member's: already says which model
    except (TypeError, ValueError) as error:
        raise BadModelArguments(
            f"model {name!r}: {error} (fix model_kwargs in the config)"
        ) from error
