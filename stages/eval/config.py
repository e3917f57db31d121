"""Configuration of ``aamflow eval``: what to measure, with which attackers, where to write."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aamflow.schemas.errors import ConfigError

TASKS = ("privacy", "ar", "tad", "ad", "bias")
"""What eval can measure: attribute leakage, AR top-1, TAD mAP, AD frame AUC, the bias gap."""

PRIVACY_SOURCES = ("static", "clips")
"""Features the attackers read: static clips (the paper's protocol) and ordinary clips."""


def _attacker_names() -> list[str]:
    from .attackers import ATTACKERS

    return ATTACKERS.names()


def _check_names(kind: str, names: tuple[str, ...], valid: list[str] | tuple[str, ...]) -> None:
    if not names:
        raise ConfigError(f"eval: --{kind} is empty; valid: {', '.join(valid)}")
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ConfigError(
            f"eval: unknown {kind} {', '.join(repr(n) for n in unknown)}; valid: {', '.join(valid)}"
        )
    if len(set(names)) != len(names):
        raise ConfigError(f"eval: --{kind} lists a name twice: {', '.join(names)}")


def _split_list(text: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    if isinstance(text, str):
        return tuple(part.strip() for part in text.split(",") if part.strip())
    return tuple(text)


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """Settings of one evaluation run.

    Attributes
    ----------
    store : Path
        The store under test (raw or anonymized).
    reference : Path or None
        A raw store to compare against (same encoder and manifest); None for no comparison.
        Also where the private labels come from when the store under test has none.
    manifest : Path or None
        The manifest the stores were extracted from: the private labels (attributes, groups)
        of a store that has none, matched by video id; it wins over ``reference``.
    tasks : tuple of str
        Any of :data:`TASKS`, in the order they are reported.
    attackers : tuple of str
        Registered privacy attackers (``linear``, ``mlp``, ``knn``).
    out : Path
        Report folder (``report.json``, ``report.md``, PNG plots, ``config.json``).
    seed : int
        Seed of every probe, head and attacker; the same seed gives the same figures on CPU.
    epochs : int or None
        Training epochs of the utility heads (AR probe, TAD head, AD head, bias probe);
        None keeps each head's default.
    quiet : bool
        No progress bar and no summary table.
    device : str
        Torch device for the utility heads (attackers run on the CPU).
    privacy_sources : tuple of str
        Any of :data:`PRIVACY_SOURCES`.
    max_clips_per_video : int
        Ordinary clips per video the clip attackers train and test on (evenly spaced), so long
        untrimmed videos do not outweigh short ones and the cost stays bounded.
    utility_seeds : int
        Seeds each utility head (AR, TAD, AD) is trained with (``seed, seed+1, ...``); the
        report gives their mean, spread and a bootstrap interval over test videos
        (:mod:`.spread`). Three by default: the TAD and AD test sets are small.
    """

    store: Path
    reference: Path | None = None
    manifest: Path | None = None
    tasks: tuple[str, ...] = TASKS
    attackers: tuple[str, ...] = ("linear", "mlp", "knn")
    out: Path = Path("report")
    seed: int = 0
    epochs: int | None = None
    quiet: bool = False
    device: str = "cpu"
    privacy_sources: tuple[str, ...] = PRIVACY_SOURCES
    max_clips_per_video: int = 32
    utility_seeds: int = 3

    def __post_init__(self) -> None:
        # Accept strings and lists from Python callers; store tuples and Paths.
        object.__setattr__(self, "store", Path(self.store))
        for key in ("reference", "manifest"):
            if getattr(self, key) is not None:
                object.__setattr__(self, key, Path(getattr(self, key)))
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "tasks", _split_list(self.tasks))
        object.__setattr__(self, "attackers", _split_list(self.attackers))
        object.__setattr__(self, "privacy_sources", _split_list(self.privacy_sources))
        _check_names("tasks", self.tasks, TASKS)
        _check_names("privacy_sources", self.privacy_sources, PRIVACY_SOURCES)
        if "privacy" in self.tasks:
            _check_names("attackers", self.attackers, _attacker_names())
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"eval: --epochs must be >= 1, got {self.epochs}")
        if self.utility_seeds < 1:
            raise ConfigError(f"eval: --utility-seeds must be >= 1, got {self.utility_seeds}")
        if self.max_clips_per_video < 1:
            raise ConfigError(
                f"eval: max_clips_per_video must be >= 1, got {self.max_clips_per_video}"
            )

    @classmethod
    def from_cli(
        cls,
        *,
        quiet: bool,
        store: Path,
        reference: Path | None,
        tasks: str,
        manifest: Path | None = None,
        attackers: str,
        out: Path,
        seed: int,
        epochs: int | None,
        utility_seeds: int | None = None,
    ) -> EvalConfig:
        """Build a config from the CLI's comma-separated ``--tasks`` and ``--attackers``."""
        return cls(
            quiet=quiet,
            store=store,
            reference=reference,
            manifest=manifest,
            tasks=_split_list(tasks),
            attackers=_split_list(attackers),
            out=out,
            seed=seed,
            epochs=epochs,
            **({} if utility_seeds is None else {"utility_seeds": utility_seeds}),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, written as ``config.json`` beside the report."""
        d = asdict(self)
        for key in ("store", "reference", "manifest", "out"):
            d[key] = None if d[key] is None else str(d[key])
        for key in ("tasks", "attackers", "privacy_sources"):
            d[key] = list(d[key])
        return d
