"""Why a measurement was left out of the report."""

from __future__ import annotations


class Skipped(Exception):
    """A measurement the store has no data for (no labels, no test videos ...).

    The message is one line naming the measurement; eval records it under ``notes``.
    """
