"""Errors a user can cause. The CLI turns these into one line and exit code 2."""

from __future__ import annotations

import reprlib
from typing import Any

_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlevel = 60, 60, 2
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 4


def show(value: Any) -> str:
    """A bounded ``repr`` for error messages: a huge or deeply nested value is cut, and
    never fully built (``repr`` of a 10 MB string or a nested alias bomb would be)."""
    return _REPR.repr(value)


class AamflowError(Exception):
    """Base class for user-facing errors (bad input, refused operation)."""


class ManifestError(AamflowError):
    """The manifest (or a video list it references) is invalid."""


class StoreError(AamflowError):
    """A path is not a valid feature store, or the store is damaged or incomplete."""


class CheckpointError(AamflowError):
    """An adapter checkpoint is missing, damaged, unsafe or does not match the store."""


class ConfigError(AamflowError):
    """A stage configuration value is invalid."""


class TrainingDiverged(AamflowError):
    """Training produced a non-finite loss or weight; the last good state is kept."""
