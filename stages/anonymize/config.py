"""Configuration of ``aamflow anonymize``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class AnonymizeConfig:
    """Options of one anonymize run (see ``aamflow anonymize --help``)."""

    store: Path
    adapter: Path | None = None
    out: Path | None = None
    fmt: str | None = None
    overwrite: bool = False
    allow_identity: bool = False
    allow_reanonymize: bool = False
    keep_private_labels: bool = False  # copy label_attr_* and label_group (for evaluation)
    device: str = "cpu"
    batch_size: int = 4096
    workers: int = 0  # 0: sized to the machine (pipeline.cluster.auto_workers)
    scheduler: str | None = None
    part_slice: str | None = None
    slurm_config: Path | None = None
    quiet: bool = False
    rows_per_read: int = 16384

    def to_dict(self) -> dict[str, object]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}
