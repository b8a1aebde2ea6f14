"""Errors that embedkd raises on purpose.

Every error a user can cause derives from :class:`EmbedkdError`; the CLI prints its message and exits
with its ``exit_code`` (never a traceback), and the service maps it onto a 4xx response.
"""

from __future__ import annotations

__all__ = [
    "AlignmentError",
    "ChecksumError",
    "EmbedkdError",
    "InputError",
    "ModelNotFoundError",
]


class EmbedkdError(Exception):
    """Base class for expected, user-facing failures."""

    exit_code: int = 1


class InputError(EmbedkdError, ValueError):
    """The data or arguments a user passed are unusable (empty, malformed, mismatched)."""

    exit_code = 2


class ModelNotFoundError(EmbedkdError, LookupError):
    """A model name or path could not be resolved to a local sentence-transformers folder."""

    exit_code = 3


class ChecksumError(EmbedkdError):
    """Assembled or cached weights do not match their expected sha256."""

    exit_code = 4


class AlignmentError(EmbedkdError):
    """A student and an index were aligned to different teachers."""

    exit_code = 5
