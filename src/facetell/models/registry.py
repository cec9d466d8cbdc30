"""One dict of model builders by name, in the spirit of timm's `register_model`/`create_model`."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import TypeVar

from torch import nn

from facetell.errors import FacetellError

Builder = TypeVar("Builder", bound=Callable[..., nn.Module])

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


class UnknownModel(FacetellError):
    """A model name that is not registered; the message suggests the closest names."""


class BadModelArguments(FacetellError, ValueError):
    """`model_kwargs` a builder rejects (unknown name, value out of range): a config mistake."""


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator: make `create_model(name, **kwargs)` call the decorated builder."""

    def decorate(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = builder
        return builder

    return decorate


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style pattern, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def create_model(name: str, **kwargs: object) -> nn.Module:
    """Build a registered model; every model maps a (B, 3, H, W) float tensor to (B,) logits."""
    try:
        builder = _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownModel(
            f"unknown model {name!r}{hint} (registered: {', '.join(list_models())})"
        ) from None
    try:
        return builder(**kwargs)
    except BadModelArguments:
        raise  # an ensemble member's: already says which model
    except (TypeError, ValueError) as error:
        raise BadModelArguments(
            f"model {name!r}: {error} (fix model_kwargs in the config)"
        ) from error
