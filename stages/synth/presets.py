"""Corpus presets: how many videos of each task, how long, at which size and frame rate."""

from __future__ import annotations

from dataclasses import dataclass

from aamflow.schemas.errors import ConfigError

# Label spaces shared by every preset (index = integer code).
ACTIONS = ("walk_left", "walk_right", "jump", "wave", "spin", "crouch")
ATTRIBUTES = {
    "skin_tone": ("light", "medium", "dark"),
    "gender": ("f", "m"),
    "clothing": ("red", "green", "blue", "striped"),
}
TEMPORAL_ATTRIBUTES = {"gait": ("normal", "limp")}
GROUPS = ("f", "m")
ANOMALIES = ("fall", "shake", "collision")

# Bias protocol: every class is skewed 95/5 towards BIAS_MAJORITY except the shortcut
# class, whose skew is inverted, so gender predicts that one action in training.
BIAS_MAJORITY = "m"
BIAS_SHORTCUT_CLASS = "wave"
BIAS_SKEW = 0.95


@dataclass(frozen=True, kw_only=True)
class Preset:
    """Sizes of one corpus; per-split counts are (train, val, test)."""

    name: str
    size: int = 112
    fps: int = 16
    ar_per_class: tuple[int, int, int]
    ar_frames: tuple[int, ...] = (32, 40, 48)
    tad_videos: tuple[int, int, int]
    tad_seconds: tuple[float, float]
    ad_videos: tuple[int, int, int]  # each split half normal, half abnormal
    ad_seconds: tuple[float, float]
    bias_per_class: tuple[int, int]  # (train, test)
    bias_frames: int = 32
    inline: bool = False  # videos inline in the YAML instead of JSONL lists


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="tiny",
            ar_per_class=(2, 1, 1),
            ar_frames=(32,),
            tad_videos=(2, 0, 1),
            tad_seconds=(8.0, 8.0),
            ad_videos=(2, 0, 2),
            ad_seconds=(8.0, 8.0),
            bias_per_class=(1, 1),
            inline=True,
        ),
        Preset(
            name="demo",
            ar_per_class=(36, 9, 15),
            tad_videos=(16, 0, 8),
            tad_seconds=(16.0, 24.0),
            ad_videos=(24, 0, 12),
            ad_seconds=(10.0, 14.0),
            bias_per_class=(20, 8),
        ),
        Preset(
            name="bench",
            ar_per_class=(150, 30, 50),
            tad_videos=(60, 10, 30),
            tad_seconds=(24.0, 40.0),
            ad_videos=(80, 0, 40),
            ad_seconds=(16.0, 24.0),
            bias_per_class=(40, 16),
        ),
    )
}


def get_preset(name: str) -> Preset:
    """Return the named preset or raise ConfigError listing the valid names."""
    try:
        return PRESETS[name]
    except KeyError:
        valid = ", ".join(PRESETS)
        raise ConfigError(f"synth: unknown preset {name!r}; valid: {valid}") from None
