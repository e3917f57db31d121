"""``aamflow export``: write a feature store in a downstream tool's layout.

``run_export(ExportConfig(store=..., fmt="actionformer", out=...))`` opens the store, writes the
chosen format (one module per format, registered in :data:`EXPORTERS`) into a staging folder
beside ``out`` and moves it into place. T per video is kept exactly: one feature row per stored
clip, in clip order. ``out`` must be new, empty, or a previous export of the same store in the
same format (which is then replaced); anything else is refused with ConfigError.

Exports are how features leave the building, so exporting a store whose provenance says it is
not anonymized logs a one-line warning unless ``allow_raw``; every export's README records the
store's anonymization status and adapter digest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aamflow.schemas.errors import ConfigError
from aamflow.schemas.store import open_store, utcnow

from ._common import (
    EXPORT_SCHEMA,
    EXPORTERS,
    MARKER,
    check_out,
    crop_plan,
    staged,
    store_summary,
    write_json,
)

log = logging.getLogger("aamflow.export")


@dataclass(frozen=True, kw_only=True)
class ExportConfig:
    """Settings of one export.

    Attributes
    ----------
    store : Path
        The feature store to export (anonymized, or raw with a warning).
    fmt : str
        A registered format: ``actionformer`` (also OpenTAD), ``rtfm`` (also MGFN), ``urdmu``.
    out : Path
        The export folder (new, empty, or a previous export of this store and format).
    quiet : bool
        No progress bar and no summary line.
    crops : int or None
        Views per clip for the anomaly formats: None (default) writes every crop the store
        holds (1, or 10 for a ten-crop store); 1 writes the centre crop alone.
    repeat_crops : int or None
        Write this many copies of a one-crop store's single view instead (for tools that
        insist on ten crops); labelled as copies in the README and marker.
    allow_raw : bool
        Export a store that is not anonymized without the warning.
    """

    store: Path
    fmt: str
    out: Path
    quiet: bool = False
    crops: int | None = None
    repeat_crops: int | None = None
    allow_raw: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "store", Path(self.store))
        object.__setattr__(self, "out", Path(self.out))
        EXPORTERS.get(self.fmt)  # unknown format: error listing the valid ones
        if self.crops is not None and self.crops < 1:
            raise ConfigError(f"export: --crops must be >= 1, got {self.crops}")
        if self.repeat_crops is not None and self.repeat_crops < 1:
            raise ConfigError(f"export: --repeat-crops must be >= 1, got {self.repeat_crops}")
        if self.crops is not None and self.repeat_crops is not None:
            raise ConfigError("export: --crops and --repeat-crops exclude each other; choose one")

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": str(self.store),
            "fmt": self.fmt,
            "out": str(self.out),
            "quiet": self.quiet,
            "crops": self.crops,
            "repeat_crops": self.repeat_crops,
            "allow_raw": self.allow_raw,
        }


def run_export(config: ExportConfig) -> dict[str, Any]:
    """Export ``config.store`` in ``config.fmt`` layout into ``config.out``.

    Returns
    -------
    dict
        The content of ``aamflow_export.json``: format, store identity (anonymized or not,
        adapter digest), the crops written, the format's summary (counts, ``feat_stride``,
        ``num_frames``, ``offset_frames``, ``input_dim`` ...).
    """
    exporter = EXPORTERS.get(config.fmt)
    with open_store(config.store) as store:
        crops = crop_plan(store, config.fmt, exporter.has_crops, config.crops, config.repeat_crops)
        check_out(config.out, store, config.fmt)
        if not store.provenance.get("anonymized") and not config.allow_raw:
            log.warning(
                "%s is not anonymized: the export holds raw encoder features "
                "(pass --allow-raw if that is intended)",
                config.store,
            )
        with staged(config.out) as target:
            summary = exporter.write(store, target, crops=crops, quiet=config.quiet)
            record = {
                "schema": EXPORT_SCHEMA,
                "format": config.fmt,
                "store": store_summary(store),
                "sampling": store.sampling,
                "crops": crops.to_dict(),
                "config": config.to_dict(),
                "summary": summary,
                "created_utc": utcnow(),
            }
            write_json(target.path(MARKER), record)  # last: marks a complete export
    if not config.quiet:
        print(f"exported {config.fmt} layout to {config.out}")
    return record
