"""The few exception types facetell raises, so every door can turn them into one clear line."""

from __future__ import annotations


class FacetellError(Exception):
    """Base class: the message is always one line a user can act on."""


class BadImage(FacetellError):
    """An input could not be turned into pixels; `source` names it, `reason` says why."""

    kind = "bad_image"

    def __init__(self, source: str, reason: str, hint: str = "") -> None:
        self.source = source
        self.reason = reason
        self.hint = hint
        message = f"{source}: {reason}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class EmptyFile(BadImage):
    kind = "empty_file"


class NotAnImage(BadImage):
    kind = "not_an_image"


class TruncatedImage(BadImage):
    kind = "truncated"


class ImageTooLarge(BadImage):
    kind = "too_large"


class ImageTooSmall(BadImage):
    kind = "too_small"


class DatasetError(FacetellError):
    """A dataset folder or manifest could not be read as labelled images."""
