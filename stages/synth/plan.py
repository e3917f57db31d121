"""The corpus plan: every video's labels and timeline, drawn from one seed, before any pixel.

Attributes are drawn independently of the action everywhere except the bias subset. The plan
is a pure function of (preset, seed); rendering a video depends only on its own plan entry.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .presets import (
    ACTIONS,
    ANOMALIES,
    ATTRIBUTES,
    BIAS_MAJORITY,
    BIAS_SHORTCUT_CLASS,
    BIAS_SKEW,
    GROUPS,
    TEMPORAL_ATTRIBUTES,
    Preset,
)

SPLITS = ("train", "val", "test")
IDLE = "idle"


@dataclass(frozen=True, kw_only=True)
class Episode:
    """What the main actor does in frames ``[start, end)``: an action, ``idle`` or an anomaly."""

    kind: str
    start: int
    end: int
    x0: float = 0.5  # hip position at start / end, as a fraction of the frame width
    x1: float = 0.5


@dataclass(frozen=True, kw_only=True)
class VideoPlan:
    """One video to render, with the labels the manifest will carry."""

    id: str
    path: str
    task: str
    split: str
    subset: str
    num_frames: int
    fps: int
    size: int
    attributes: dict[str, str]
    episodes: tuple[Episode, ...]
    action: str | None = None
    anomaly: int | None = None
    group: str | None = None
    extra_actor: bool = False
    seed: int = 0

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def segments(self) -> list[dict[str, Any]]:
        """TAD segments (seconds) of the labelled action episodes."""
        return [_seconds(e, self.fps, label=e.kind) for e in self.episodes if e.kind in ACTIONS]

    def anomaly_segments(self) -> list[dict[str, Any]]:
        """Anomaly intervals (seconds)."""
        return [_seconds(e, self.fps) for e in self.episodes if e.kind in ANOMALIES]

    def to_entry(self) -> dict[str, Any]:
        """The manifest entry (plain types, stable key order)."""
        entry: dict[str, Any] = {
            "id": self.id,
            "path": self.path,
            "split": self.split,
            "task": self.task,
            "subset": self.subset,
            "fps": self.fps,
            "num_frames": self.num_frames,
            "duration": round(self.duration, 6),
        }
        if self.action is not None:
            entry["action"] = self.action
        if self.task == "tad":
            entry["segments"] = self.segments()
        if self.anomaly is not None:
            entry["anomaly"] = self.anomaly
            if self.anomaly:
                entry["anomaly_segments"] = self.anomaly_segments()
        entry["attributes"] = dict(self.attributes)
        if self.group is not None:
            entry["group"] = self.group
        return entry


def _seconds(e: Episode, fps: int, label: str | None = None) -> dict[str, Any]:
    seg: dict[str, Any] = {"start": round(e.start / fps, 6), "end": round(e.end / fps, 6)}
    if label is not None:
        seg = {"label": label, **seg}
    return seg


def draw_attributes(rng: np.random.Generator, gender: str | None = None) -> dict[str, str]:
    """Independent uniform draws of every private attribute (gender fixed if given)."""
    out = {name: str(rng.choice(values)) for name, values in ATTRIBUTES.items()}
    out.update({name: str(rng.choice(values)) for name, values in TEMPORAL_ATTRIBUTES.items()})
    if gender is not None:
        out["gender"] = gender
    return out


def make_plan(preset: Preset, seed: int) -> tuple[VideoPlan, ...]:
    """All videos of a corpus, in a fixed order, from one seed."""
    root = np.random.SeedSequence([seed, 0x5EED])
    rngs = [np.random.default_rng(s) for s in root.spawn(4)]
    plans = [
        *_ar_plans(preset, rngs[0]),
        *_tad_plans(preset, rngs[1]),
        *_ad_plans(preset, rngs[2]),
        *_bias_plans(preset, rngs[3]),
    ]
    # One render seed per video, derived from the corpus seed and the video id only.
    return tuple(
        replace(p, seed=int(np.random.SeedSequence([seed, *p.id.encode()]).generate_state(1)[0]))
        for p in plans
    )


def _trimmed_episode(rng: np.random.Generator, action: str, n: int, fps: int, gait: str) -> Episode:
    """A whole trimmed video of one action; walks are centred so they stay in frame."""
    if action in _WALKS:
        dist = walk_speed(rng, gait) * n / fps
        mid = 0.5 + rng.uniform(-0.05, 0.05)
        d = _WALKS[action]
        return Episode(kind=action, start=0, end=n, x0=mid - d * dist / 2, x1=mid + d * dist / 2)
    x = float(rng.uniform(0.3, 0.7))
    return Episode(kind=action, start=0, end=n, x0=x, x1=x)


def _ar_plans(preset: Preset, rng: np.random.Generator) -> list[VideoPlan]:
    out: list[VideoPlan] = []
    for split, per_class in zip(SPLITS, preset.ar_per_class, strict=True):
        actions = [a for a in ACTIONS for _ in range(per_class)]
        rng.shuffle(actions)
        for action in actions:
            n = int(rng.choice(preset.ar_frames))
            vid = f"ar_{len(out):05d}"
            attributes = draw_attributes(rng)
            out.append(
                VideoPlan(
                    id=vid,
                    path=f"videos/ar/{vid}.mp4",
                    task="ar",
                    split=split,
                    subset="main",
                    num_frames=n,
                    fps=preset.fps,
                    size=preset.size,
                    attributes=attributes,
                    episodes=(_trimmed_episode(rng, action, n, preset.fps, attributes["gait"]),),
                    action=action,
                )
            )
    return out


# Walking: speed in frame widths per second; plans keep the hip inside [MARGIN, 1 - MARGIN].
WALK_SPEED = 0.14
LIMP_SLOWDOWN = 0.7
MARGIN = 0.14
_WALKS = {"walk_left": -1.0, "walk_right": 1.0}


def walk_speed(rng: np.random.Generator, gait: str) -> float:
    """A video's walking speed (frame widths per second); a limp is slower."""
    return WALK_SPEED * rng.uniform(0.9, 1.1) * (LIMP_SLOWDOWN if gait == "limp" else 1.0)


def _walk_episode(kind: str, start: int, n: int, x: float, speed: float, fps: int) -> Episode:
    """A walk of n frames from x, turned towards the side with room and cut to fit it."""
    room = {"walk_left": x - MARGIN, "walk_right": 1.0 - MARGIN - x}
    dist = speed * n / fps
    if room[kind] < dist and room[_other_walk(kind)] > room[kind]:
        kind = _other_walk(kind)
    dist = min(dist, room[kind])
    return Episode(kind=kind, start=start, end=start + n, x0=x, x1=x + _WALKS[kind] * dist)


def _other_walk(kind: str) -> str:
    return "walk_right" if kind == "walk_left" else "walk_left"


def _timeline(
    rng: np.random.Generator,
    n: int,
    fps: int,
    kinds: tuple[str, ...],
    action_s: tuple[float, float],
    idle_s: tuple[float, float],
    gait: str,
    anomaly: str | None = None,
) -> tuple[Episode, ...]:
    """Alternate idle gaps and actions over n frames; optionally one anomaly mid-video."""
    speed = walk_speed(rng, gait)
    x = float(rng.uniform(0.25, 0.75))
    min_tail = int(idle_s[0] * fps)
    t = int(rng.uniform(*idle_s) * fps)
    eps = [Episode(kind=IDLE, start=0, end=t, x0=x, x1=x)]
    anomaly_at = int(rng.uniform(0.3, 0.6) * n)
    while t < n:
        length = int(rng.uniform(*action_s) * fps)
        an_len = int(rng.uniform(2.0, 3.0) * fps)
        # place the anomaly once due, or now if another action would leave no room for it
        room_after = n - (t + length + int(idle_s[1] * fps) + an_len + min_tail)
        if anomaly is not None and (t >= anomaly_at or room_after < 0):
            length = max(min(an_len, n - t - min_tail), 1)
            ep = Episode(kind=anomaly, start=t, end=t + length, x0=x, x1=x)
            anomaly = None
        elif t + length + min_tail > n:
            break
        else:
            kind = str(rng.choice(kinds))
            if kind in _WALKS:
                ep = _walk_episode(kind, t, length, x, speed, fps)
            else:
                ep = Episode(kind=kind, start=t, end=t + length, x0=x, x1=x)
        eps.append(ep)
        t, x = ep.end, ep.x1
        gap = min(int(rng.uniform(*idle_s) * fps), n - t)
        eps.append(Episode(kind=IDLE, start=t, end=t + gap, x0=x, x1=x))
        t += gap
    eps.append(Episode(kind=IDLE, start=t, end=n, x0=x, x1=x))
    return _merge_idle(eps)


def _merge_idle(eps: list[Episode]) -> tuple[Episode, ...]:
    out: list[Episode] = []
    for e in eps:
        if e.end <= e.start:
            continue
        if out and out[-1].kind == IDLE and e.kind == IDLE:
            prev = out[-1]
            out[-1] = Episode(kind=IDLE, start=prev.start, end=e.end, x0=prev.x0, x1=e.x1)
        else:
            out.append(e)
    return tuple(out)


def _frames(rng: np.random.Generator, seconds: tuple[float, float], fps: int) -> int:
    return int(round(rng.uniform(*seconds) * fps / 16)) * 16  # whole 16-frame clips


def _tad_plans(preset: Preset, rng: np.random.Generator) -> list[VideoPlan]:
    out: list[VideoPlan] = []
    for split, count in zip(SPLITS, preset.tad_videos, strict=True):
        for _ in range(count):
            n = _frames(rng, preset.tad_seconds, preset.fps)
            vid = f"tad_{len(out):04d}"
            out.append(
                VideoPlan(
                    id=vid,
                    path=f"videos/tad/{vid}.mp4",
                    task="tad",
                    split=split,
                    subset="main",
                    num_frames=n,
                    fps=preset.fps,
                    size=preset.size,
                    attributes=(attributes := draw_attributes(rng)),
                    episodes=_timeline(
                        rng, n, preset.fps, ACTIONS, (2.0, 3.5), (1.0, 2.5), attributes["gait"]
                    ),
                    extra_actor=bool(rng.random() < 0.3),
                )
            )
    return out


# Ordinary activity in anomaly-detection videos: mostly idling and walking about.
_AD_NORMAL = ("walk_left", "walk_right", "walk_left", "walk_right", "wave", "crouch")


def _ad_plans(preset: Preset, rng: np.random.Generator) -> list[VideoPlan]:
    out: list[VideoPlan] = []
    for split, count in zip(SPLITS, preset.ad_videos, strict=True):
        # half normal, half abnormal; anomaly kinds in turn so each is represented
        n_abnormal = count // 2
        kinds = [ANOMALIES[(len(out) + i) % len(ANOMALIES)] for i in range(n_abnormal)]
        labels: list[str | None] = [*kinds, *[None] * (count - n_abnormal)]
        rng.shuffle(labels)
        for kind in labels:
            abnormal = kind is not None
            n = _frames(rng, preset.ad_seconds, preset.fps)
            vid = f"ad_{len(out):04d}"
            out.append(
                VideoPlan(
                    id=vid,
                    path=f"videos/ad/{vid}.mp4",
                    task="ad",
                    split=split,
                    subset="main",
                    num_frames=n,
                    fps=preset.fps,
                    size=preset.size,
                    attributes=(attributes := draw_attributes(rng)),
                    episodes=_timeline(
                        rng,
                        n,
                        preset.fps,
                        _AD_NORMAL,
                        (1.5, 3.0),
                        (1.0, 2.5),
                        attributes["gait"],
                        anomaly=kind,
                    ),
                    anomaly=int(abnormal),
                    extra_actor=kind == "collision" or bool(rng.random() < 0.3),
                )
            )
    return out


def bias_genders(per_class: int, action: str, train: bool) -> list[str]:
    """Genders of one class's bias videos: 95/5 skew in train (inverted for the shortcut
    class), balanced in test."""
    if not train:
        return [GROUPS[i % 2] for i in range(per_class)]
    minority = next(g for g in GROUPS if g != BIAS_MAJORITY)
    major, minor = (
        (minority, BIAS_MAJORITY) if action == BIAS_SHORTCUT_CLASS else (BIAS_MAJORITY, minority)
    )
    n_major = min(per_class, max(int(round(BIAS_SKEW * per_class)), 1))
    return [major] * n_major + [minor] * (per_class - n_major)


def _bias_plans(preset: Preset, rng: np.random.Generator) -> list[VideoPlan]:
    out: list[VideoPlan] = []
    for split, per_class in zip(("train", "test"), preset.bias_per_class, strict=True):
        items = [
            (a, g) for a in ACTIONS for g in bias_genders(per_class, a, train=split == "train")
        ]
        order = rng.permutation(len(items))
        for k in order:
            action, gender = items[k]
            vid = f"bias_{len(out):04d}"
            out.append(
                VideoPlan(
                    id=vid,
                    path=f"videos/bias/{vid}.mp4",
                    task="ar",
                    split=split,
                    subset="bias",
                    num_frames=preset.bias_frames,
                    fps=preset.fps,
                    size=preset.size,
                    attributes=(attributes := draw_attributes(rng, gender=gender)),
                    episodes=(
                        _trimmed_episode(
                            rng, action, preset.bias_frames, preset.fps, attributes["gait"]
                        ),
                    ),
                    action=action,
                    group=gender,
                )
            )
    return out
