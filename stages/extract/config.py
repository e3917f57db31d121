"""Configuration of ``aamflow extract``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aamflow.schemas.errors import ConfigError
from aamflow.schemas.manifest import CROP_COUNTS, Manifest


@dataclass(frozen=True, kw_only=True)
class ExtractConfig:
    """Options of one extract run (see ``aamflow extract --help``)."""

    manifest: Path
    out: Path = Path("features.zarr")
    encoder: str = "builtin"
    weights: str | None = None
    encoder_config: str | None = None
    decoder: str = "auto"
    precision: str = "fp32"
    device: str = "cpu"
    batch_size: int = 64
    workers: int = 0  # 0: sized to the machine (pipeline.cluster.auto_workers)
    scheduler: str | None = None
    part_slice: str | None = None
    slurm_config: Path | None = None
    part_size: int = 64
    fmt: str | None = None
    overwrite: bool = False
    strict: bool = False
    commit_only: bool = False
    allow_duplicate_videos: bool = False  # one video under ids in different splits
    loader_workers: int = 1
    crops: int | None = None  # None: the manifest's sampling.crops
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ConfigError(
                f"--workers must be >= 0 (0: sized to the machine), got {self.workers}"
            )
        for name in ("batch_size", "part_size"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}"
                )
        if self.loader_workers < 0:
            raise ConfigError(f"loader_workers must be >= 0, got {self.loader_workers}")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ConfigError(f"--precision {self.precision!r}: valid: fp32, bf16, fp16")
        if self.decoder not in ("decord", "pyav", "auto"):
            raise ConfigError(f"--decoder {self.decoder!r}: valid: auto, decord, pyav")
        if self.crops is not None and self.crops not in CROP_COUNTS:
            raise ConfigError(
                f"--crops must be 1 or 10 (ten-crop: 4 corners + centre and their mirror "
                f"images), got {self.crops}"
            )

    def crops_for(self, manifest: Manifest) -> int:
        """Crops per clip: ``--crops`` when given, else the manifest's ``sampling.crops``."""
        return self.crops if self.crops is not None else manifest.sampling.crops

    def encoder_options(self) -> dict[str, object]:
        opts: dict[str, object] = {}
        if self.weights:
            opts["weights"] = self.weights
        if self.encoder_config:
            opts["config"] = self.encoder_config
        return opts

    def to_dict(self) -> dict[str, object]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}
