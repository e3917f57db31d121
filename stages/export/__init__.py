"""aamflow stage: export — write a feature store in a downstream tool's layout.

``run_export(ExportConfig(store=..., fmt=..., out=...))``. Formats (one module each, registered
in :data:`EXPORTERS`): ``actionformer`` (ActionFormer and OpenTAD), ``rtfm`` (RTFM and MGFN),
``urdmu`` (UR-DMU). Each module's docstring documents its folder layout; each export carries a
README.md with the values to set in the tool's config, and ``aamflow_export.json``.
"""

from __future__ import annotations

from . import actionformer, rtfm, urdmu  # noqa: F401  (register the formats)
from ._common import EXPORTERS, MARKER, Exporter
from .stage import ExportConfig, run_export

__all__ = ["EXPORTERS", "MARKER", "ExportConfig", "Exporter", "run_export"]
