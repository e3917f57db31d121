"""Errors a user can cause. The CLI turns these into one line and exit code 2."""

from __future__ import annotations


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
