"""Configuration of ``aamflow train-adapter``: a frozen, validated, JSON-round-trippable dataclass."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from aamflow.schemas.errors import ConfigError

# CLI task name -> head registry name (aamflow.stages.models.heads.HEADS)
TASK_HEADS = {"ar": "ar_linear", "tad": "tad", "ad": "ad_mil"}
PRECISIONS = ("fp32", "bf16", "fp16")

_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_bytes(text: str | int) -> int:
    """``"4GB"`` -> 4_000_000_000, ``"512MiB"`` -> 536_870_912, ``"0"`` -> 0 (always stream).

    Decimal units (KB, MB, GB, TB) are powers of 1000, binary ones (KiB ... TiB) of 1024.
    """
    if isinstance(text, int):
        value, unit = float(text), ""
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
        if not m or m.group(2).lower() not in _UNITS:
            raise ConfigError(
                f"--memory-budget {text!r}: expected a size such as 4GB, 512MB or 2GiB"
            )
        value, unit = float(m.group(1)), m.group(2).lower()
    if value < 0 or not math.isfinite(value):
        raise ConfigError(f"--memory-budget {text!r}: must be >= 0")
    return int(value * _UNITS[unit])


def parse_tasks(text: str | None) -> tuple[str, ...] | None:
    """``"ar,tad"`` -> ``("ar", "tad")``; ``None`` -> None (every task the store has labels
    for); ``"none"`` or ``""`` -> ``()`` (no co-training: L_T = 0)."""
    if text is None:
        return None
    if text.strip().lower() in ("", "none"):
        return ()
    return tuple(dict.fromkeys(t.strip().lower() for t in text.split(",") if t.strip()))


# Named settings (``--recipe``): what a run starts from before its own flags.
RECIPES: dict[str, dict[str, Any]] = {
    # the measured best: video eraser (rank chosen from the data), L_LC and L_T, no L_B
    "default": {},
    # the paper's objective: NT-Xent L_B maximised, L_LC x100, L_T, AdamW 1e-4, batch 512,
    # 100 epochs, no eraser (benchmarks/RESULTS.md has what it measured here)
    "paper": {
        "eraser": "none",
        "w_lc": 100.0,
        "w_t": 1.0,
        "w_b": 1.0,
        "privacy_loss": "ntxent",
        "lr": 1e-4,
        "batch_size": 512,
        "epochs": 100,
    },
    # the previous demo's settings: a static-clip eraser of rank 350 after the AAM
    "static-eraser": {
        "eraser": "static",
        "erase_rank": 350,
        "w_b": 0.0,
        "w_lc": 10.0,
        "lr": 1e-3,
        "epochs": 60,
        "batch_size": 256,
    },
}


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Options of one train-adapter run (see ``aamflow train-adapter --help``).

    The objective is ``w_lc * L_LC + w_t * L_T - w_b * L_B``. Fields without a CLI flag
    (``hparams``, ``head_lr`` ...) are settable from Python; ``config.json`` in the output
    folder holds every field of a run and ``TrainConfig.from_dict`` rebuilds it.
    """

    store: Path
    out: Path | None = None  # default: <store>.adapter (what `anonymize --store` finds)
    arch: str = "token_attention"
    hparams: Mapping[str, Any] = field(default_factory=dict)
    tasks: tuple[str, ...] | None = None  # None: every task the store has training labels for
    epochs: int = 100
    batch_size: int = 512  # videos per step; clamped to the number of training videos
    lr: float = 1e-4  # AAM learning rate (AdamW), the paper's
    head_lr: float = 1e-3  # co-trained heads start from scratch: they learn faster
    weight_decay: float = 0.01
    seed: int = 0
    recipe: str = "default"  # the named settings this run started from (RECIPES)
    w_lc: float = 100.0
    w_t: float = 1.0
    # L_B is off by default: with the video eraser it lowered the measured leakage reduction
    # (benchmarks/RESULTS.md); the paper's objective is the recipe "paper"
    w_b: float = 0.0
    temperature: float = 0.1
    # L_LC relative to the latents' mean per-dimension variance, so loss weights mean the
    # same for any encoder's feature scale (the paper's absolute MSE does not transfer)
    lc_relative: bool = True
    # stop maximising L_B at ln(2B - 1), where positives are as similar as negatives:
    # beyond it the adapter anti-aligns a video's static clips, destroying features
    lb_cap: bool = True
    # L_B's form: "ntxent" (the paper's) or "xcov" (minus the paired cross-covariance of two
    # static clips, relative to the latent variance; see stages.models.losses)
    privacy_loss: str = "ntxent"
    # a fitted, label-free linear eraser composed with the AAM (stages.models.eraser):
    # "video" (default) removes, before the AAM, the directions in which videos differ
    # more than a video's clips vary over time and the seen classes differ; "static"
    # removes after the AAM the top principal axes of per-video static latents; "none"
    eraser: str = "video"
    # directions the eraser removes; None: chosen from the training data (video eraser,
    # stages.train.rank) with no private label
    erase_rank: int | None = None
    device: str = "cpu"
    precision: str = "fp32"
    memory_budget: int = 4 * 10**9  # bytes of latents kept on the device; beyond: streaming
    resume: bool = False
    val_every: int | None = None  # None: every epoch on small stores, ~20 times a run otherwise
    val_max_videos: int = 256  # per task, spread evenly over the val split
    tad_window: int = 256  # timesteps of a TAD training window (ActionFormer crops too)
    quiet: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "store", Path(self.store))
        if self.out is not None:
            object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "hparams", dict(self.hparams))
        if self.tasks is not None:
            object.__setattr__(self, "tasks", tuple(self.tasks))
        self._validate()

    def _validate(self) -> None:
        from aamflow.stages.models.aam import AAM_ARCHS
        from aamflow.stages.models.losses import PRIVACY_LOSSES

        if self.arch not in AAM_ARCHS:
            raise ConfigError(
                f"--arch {self.arch!r}: unknown AAM architecture; valid: {', '.join(AAM_ARCHS)}"
            )
        for t in self.tasks or ():
            if t not in TASK_HEADS:
                raise ConfigError(f"--tasks: unknown task {t!r}; valid: {', '.join(TASK_HEADS)}")
        ints = {
            "epochs": (self.epochs, 1),
            "batch_size": (self.batch_size, 2),
            "val_max_videos": (self.val_max_videos, 1),
            "tad_window": (self.tad_window, 1),
            "memory_budget": (self.memory_budget, 0),
            "seed": (self.seed, 0),
        }
        if self.erase_rank is not None:
            ints["erase_rank"] = (self.erase_rank, 0)
        if self.val_every is not None:
            ints["val_every"] = (self.val_every, 1)
        for name, (value, low) in ints.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} must be an integer >= {low}, got {value!r}")
        for name in ("lr", "head_lr", "temperature"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"--{name.replace('_', '-')} must be > 0, got {value!r}")
        for name in ("w_lc", "w_t", "w_b", "weight_decay"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {value!r}")
        from aamflow.stages.models.eraser import ERASERS

        if self.eraser not in ERASERS:
            raise ConfigError(f"--eraser {self.eraser!r}: valid: {', '.join(ERASERS)}")
        if self.eraser == "static" and not self.erase_rank:
            raise ConfigError("--eraser static needs --erase-rank K > 0 (it has no rank rule)")
        if self.eraser == "none" and self.erase_rank:
            raise ConfigError(f"--erase-rank {self.erase_rank} with --eraser none: pick one")
        if self.recipe not in RECIPES:
            raise ConfigError(f"--recipe {self.recipe!r}: valid: {', '.join(RECIPES)}")
        if self.privacy_loss not in PRIVACY_LOSSES:
            raise ConfigError(
                f"--privacy-loss {self.privacy_loss!r}: valid: {', '.join(PRIVACY_LOSSES)}"
            )
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision {self.precision!r}: valid: {', '.join(PRECISIONS)}")
        if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", self.device):
            raise ConfigError(f"--device {self.device!r}: expected cpu, cuda or cuda:N")

    @classmethod
    def from_cli(cls, **opts: Any) -> TrainConfig:
        """Build from the CLI's keyword options (``tasks`` and ``memory_budget`` as text).

        Options left as None take the recipe's value (``recipe``, default ``"default"``),
        then the field default: the dataclass is the one place defaults are declared.
        """
        opts = {k: v for k, v in opts.items() if v is not None or k == "tasks"}
        recipe = opts.get("recipe") or "default"
        if recipe not in RECIPES:
            raise ConfigError(f"--recipe {recipe!r}: valid: {', '.join(RECIPES)}")
        opts = {**RECIPES[recipe], **opts, "recipe": recipe}
        if "tasks" in opts:
            opts["tasks"] = parse_tasks(opts["tasks"])
        if "memory_budget" in opts:
            opts["memory_budget"] = parse_bytes(opts["memory_budget"])
        return cls(**opts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: paths as strings, tuples as lists."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, Path):
                out[key] = str(value)
            elif isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Inverse of ``to_dict`` (unknown keys are refused)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"train config: unknown fields {unknown}")
        return cls(**dict(data))
