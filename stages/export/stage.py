"""``aamflow export``: write a feature store in a downstream tool's layout.

``run_export(ExportConfig(store=..., fmt="actionformer", out=...))`` opens the store, writes the
chosen format (one module per format, registered in :data:`EXPORTERS`) into a staging folder
beside ``out`` and moves it into place. T per video is kept exactly: one feature row per stored
clip, in clip order. ``out`` must be new, empty, or a previous export of the same store in the
same format (which is then replaced); anything else is refused with ConfigError.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aamflow.schemas.errors import ConfigError
from aamflow.schemas.store import open_store, utcnow

from ._common import EXPORT_SCHEMA, EXPORTERS, MARKER, check_out, staged, store_summary, write_json


@dataclass(frozen=True, kw_only=True)
class ExportConfig:
    """Settings of one export.

    Attributes
    ----------
    store : Path
        The feature store to export (raw or anonymized).
    fmt : str
        A registered format: ``actionformer`` (also OpenTAD), ``rtfm`` (also MGFN), ``urdmu``.
    out : Path
        The export folder (new, empty, or a previous export of this store and format).
    quiet : bool
        No progress bar and no summary line.
    crops : int or None
        Crop axis size for the anomaly formats (None: the format's default, 1 for ``rtfm``,
        10 for ``urdmu``); the store's single view is repeated.
    """

    store: Path
    fmt: str
    out: Path
    quiet: bool = False
    crops: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "store", Path(self.store))
        object.__setattr__(self, "out", Path(self.out))
        EXPORTERS.get(self.fmt)  # unknown format: error listing the valid ones
        if self.crops is not None and self.crops < 1:
            raise ConfigError(f"export: crops must be >= 1, got {self.crops}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": str(self.store),
            "fmt": self.fmt,
            "out": str(self.out),
            "quiet": self.quiet,
            "crops": self.crops,
        }


def run_export(config: ExportConfig) -> dict[str, Any]:
    """Export ``config.store`` in ``config.fmt`` layout into ``config.out``.

    Returns
    -------
    dict
        The content of ``aamflow_export.json``: format, store identity, the format's summary
        (counts, ``feat_stride``, ``num_frames``, ``offset_frames``, ``input_dim`` ...).
    """
    exporter = EXPORTERS.get(config.fmt)
    crops = config.crops if config.crops is not None else exporter.default_crops
    with open_store(config.store) as store:
        check_out(config.out, store, config.fmt)
        with staged(config.out) as target:
            summary = exporter.write(store, target, crops=crops, quiet=config.quiet)
            record = {
                "schema": EXPORT_SCHEMA,
                "format": config.fmt,
                "store": store_summary(store),
                "sampling": store.sampling,
                "config": config.to_dict(),
                "summary": summary,
                "created_utc": utcnow(),
            }
            write_json(target.path(MARKER), record)  # last: marks a complete export
    if not config.quiet:
        print(f"exported {config.fmt} layout to {config.out}")
    return record
