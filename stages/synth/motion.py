"""Pose tracks: what each joint does, frame by frame, for every action, idle and anomaly.

A pose is a dict of float32 arrays over frames (see ``POSE_KEYS``). Angles are radians:
legs from straight down, positive towards +x; arms from straight down, positive *outward*;
``lean`` tilts the torso top towards +x; ``yaw`` turns the body (spin); ``roll`` tips the whole
body about the feet (falls). ``x`` is the hip position in frame widths; ``lift``, ``jx`` and
``jy`` are offsets in body units (1/8 of the body height), y pointing down.
"""

from __future__ import annotations

import numpy as np

from .plan import IDLE, Episode

POSE_KEYS = (
    "x",
    "lift",
    "lean",
    "yaw",
    "roll",
    "sh_l",
    "sh_r",
    "el_l",
    "el_r",
    "hip_l",
    "hip_r",
    "kn_l",
    "kn_r",
    "jx",
    "jy",
)
Pose = dict[str, np.ndarray]
_BLEND = 4  # frames over which one episode's pose eases into the next


def rest_pose(n: int, x: float) -> Pose:
    """Standing still: arms hanging slightly out, feet slightly apart."""
    p = {k: np.zeros(n, np.float32) for k in POSE_KEYS}
    p["x"][:] = x
    p["sh_l"][:] = p["sh_r"][:] = 0.12
    p["el_l"][:] = p["el_r"][:] = 0.08
    p["hip_l"][:] = -0.07
    p["hip_r"][:] = 0.07
    return p


def _smooth_noise(rng: np.random.Generator, n: int, width: int) -> np.ndarray:
    """Zero-mean noise of unit-ish amplitude, low-passed over ``width`` frames."""
    raw = rng.standard_normal(n + 2 * width)
    kernel = np.hanning(2 * width + 1)
    out = np.convolve(raw, kernel / kernel.sum() * np.sqrt(width), mode="same")[width:-width]
    return out.astype(np.float32)


def _squat(p: Pose, q: np.ndarray, spread: float = 1.0) -> None:
    """Bend both knees outward by q in [0, 1] (feet stay under the hips)."""
    p["hip_l"] += -spread * q
    p["hip_r"] += spread * q
    p["kn_l"] += 2 * spread * q
    p["kn_r"] += -2 * spread * q


def _walk(p: Pose, t: np.ndarray, d: float, gait: str, bad: str, rng: np.random.Generator):
    cadence = rng.uniform(0.95, 1.1) * (0.72 if gait == "limp" else 1.0)
    phi = 2 * np.pi * cadence * t + rng.uniform(0, 2 * np.pi)
    amp = {"l": 0.42, "r": 0.42}
    stiff = {"l": 1.0, "r": 1.0}
    if gait == "limp":
        amp[bad], stiff[bad] = 0.18, 0.25
    swing = {"l": -amp["l"] * np.sin(phi), "r": amp["r"] * np.sin(phi)}
    vel = {"l": -np.cos(phi), "r": np.cos(phi)}
    for s, sign in (("l", -1.0), ("r", 1.0)):
        p[f"hip_{s}"] = swing[s] + 0.05 * sign
        # the knee bends while the leg swings forward (in the walking direction)
        p[f"kn_{s}"] = -d * 0.75 * stiff[s] * np.maximum(0.0, d * vel[s])
        p[f"sh_{s}"] = 0.12 - sign * 0.6 * swing[s] * 0.8
    p["lean"] += d * 0.06
    if gait == "limp":
        side = -1.0 if bad == "l" else 1.0
        stance = np.maximum(0.0, np.sin(phi) * side * d)  # weight on the bad leg
        p["jy"] += 0.5 * stance
        p["lean"] += side * 0.12 * stance


def _jump(p: Pose, t: np.ndarray, gait: str, bad: str, rng: np.random.Generator):
    f = rng.uniform(0.9, 1.2)
    ph = (f * t + rng.uniform(0, 1)) % 1.0
    prep = np.where(ph < 0.25, np.sin(np.pi * ph / 0.25), 0.0)
    flight = np.where((ph >= 0.25) & (ph < 0.7), np.sin(np.pi * (ph - 0.25) / 0.45), 0.0)
    land = np.where(ph >= 0.7, np.sin(np.pi * (ph - 0.7) / 0.3), 0.0)
    _squat(p, (0.55 * prep + 0.45 * land).astype(np.float32), 0.6)
    p["lift"] += 1.6 * flight
    p["sh_l"] += 2.2 * flight + 0.3 * prep
    p["sh_r"] += 2.2 * flight + 0.3 * prep
    if gait == "limp":  # the bad leg tucks less
        p[f"kn_{bad}"] *= 0.4


def _crouch(p: Pose, t: np.ndarray, gait: str, bad: str, rng: np.random.Generator):
    period = rng.uniform(1.6, 2.2)
    q = 0.5 * (1 - np.cos(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi)))
    _squat(p, q.astype(np.float32), 1.0)
    p["sh_l"] += 1.1 * q
    p["sh_r"] += 1.1 * q
    p["el_l"] += 0.4 * q
    p["el_r"] += 0.4 * q
    if gait == "limp":
        p[f"kn_{bad}"] *= 0.5


def _wave(p: Pose, t: np.ndarray, rng: np.random.Generator):
    s = "l" if rng.random() < 0.5 else "r"
    f = rng.uniform(1.6, 2.4)
    lift = rng.uniform(2.2, 2.5)
    p[f"sh_{s}"][:] = lift
    p[f"el_{s}"] = np.pi - lift - 0.15 + 0.6 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3))
    p["lean"] += 0.03 * np.sin(2 * np.pi * 0.4 * t)


def _spin(p: Pose, t: np.ndarray, rng: np.random.Generator):
    f = rng.uniform(0.6, 0.9) * (1 if rng.random() < 0.5 else -1)
    p["yaw"] = 2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)
    p["sh_l"][:] = p["sh_r"][:] = 0.6
    p["el_l"][:] = p["el_r"][:] = 0.3


def _idle(p: Pose, t: np.ndarray, rng: np.random.Generator):
    f = rng.uniform(0.2, 0.35)
    ph = rng.uniform(0, 2 * np.pi)
    p["lean"] += 0.03 * np.sin(2 * np.pi * f * t + ph)
    p["sh_l"] += 0.04 * np.sin(2 * np.pi * f * t + ph + 1)
    p["sh_r"] += 0.04 * np.sin(2 * np.pi * f * t + ph + 2)


def _ease(n: int, frames: int) -> np.ndarray:
    """0 -> 1 smoothstep over ``frames`` then 1."""
    u = np.clip(np.arange(n) / max(frames, 1), 0, 1)
    return (u * u * (3 - 2 * u)).astype(np.float32)


def _fall(p: Pose, n: int, fps: int, rng: np.random.Generator):
    side = 1.0 if rng.random() < 0.5 else -1.0
    down = max(int(0.45 * fps), 2)
    up = max(int(0.8 * fps), 2)
    tau = np.clip(np.arange(n) / down, 0, 1) ** 2  # accelerating topple
    amount = np.minimum(tau, _ease(n, up)[::-1]).astype(np.float32)  # lie, then get up
    p["roll"] = side * 1.45 * amount
    p["jy"] -= 1.1 * np.abs(np.sin(p["roll"]))  # lie on the floor, not through it
    p["sh_l"] += 1.4 * amount
    p["sh_r"] += 1.4 * amount
    p["hip_l"] -= 0.3 * amount
    p["hip_r"] += 0.3 * amount
    p["sh_l"] += 0.15 * amount * _smooth_noise(rng, n, 2)


def _shake(p: Pose, n: int, fps: int, rng: np.random.Generator):
    w = max(fps // 8, 1)  # erratic: energy around 4-8 Hz
    p["jx"] += 0.7 * _smooth_noise(rng, n, w)
    p["jy"] += 0.35 * _smooth_noise(rng, n, w)
    p["lean"] += 0.25 * _smooth_noise(rng, n, w)
    for k, amp in (("sh_l", 1.0), ("sh_r", 1.0), ("el_l", 0.8), ("el_r", 0.8)):
        p[k] += 0.6 + amp * np.abs(_smooth_noise(rng, n, w))
    for k in ("kn_l", "kn_r"):
        p[k] += 0.3 * _smooth_noise(rng, n, w)


def knock(n: int, fps: int, side: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A collision's effect on one body: tipped over, staggered aside, then recovered."""
    hit = max(int(0.2 * fps), 1)
    rec = max(int(0.9 * fps), 2)
    env = np.minimum(_ease(n, hit), _ease(n, rec)[::-1])
    return {
        "roll": side * rng.uniform(1.0, 1.35) * env,
        "jx": side * 1.2 * env,
        "sh": 1.5 * env,
    }


def _collision_victim(p: Pose, n: int, fps: int, side: float, rng: np.random.Generator):
    k = knock(n, fps, side, rng)
    p["roll"] += k["roll"]
    p["jy"] -= 1.1 * np.abs(np.sin(k["roll"]))
    p["jx"] += k["jx"]
    p["sh_l"] += k["sh"]
    p["sh_r"] += k["sh"]


def episode_pose(
    e: Episode,
    fps: int,
    gait: str,
    bad_leg: str,
    rng: np.random.Generator,
    collision_side: float = 1.0,
) -> Pose:
    """The main actor's pose over one episode of the plan."""
    n = e.end - e.start
    t = np.arange(n, dtype=np.float64) / fps
    p = rest_pose(n, e.x0)
    p["x"] = np.linspace(e.x0, e.x1, n, endpoint=False).astype(np.float32)
    if e.kind in ("walk_left", "walk_right"):
        _walk(p, t, -1.0 if e.kind == "walk_left" else 1.0, gait, bad_leg, rng)
    elif e.kind == "jump":
        _jump(p, t, gait, bad_leg, rng)
    elif e.kind == "crouch":
        _crouch(p, t, gait, bad_leg, rng)
    elif e.kind == "wave":
        _wave(p, t, rng)
    elif e.kind == "spin":
        _spin(p, t, rng)
    elif e.kind == IDLE:
        _idle(p, t, rng)
    elif e.kind == "fall":
        _fall(p, n, fps, rng)
    elif e.kind == "shake":
        _shake(p, n, fps, rng)
    elif e.kind == "collision":
        _collision_victim(p, n, fps, collision_side, rng)
    else:
        raise ValueError(f"no motion for episode kind {e.kind!r}")
    return {k: np.asarray(v, np.float32) for k, v in p.items()}


def _join(parts: list[Pose]) -> Pose:
    """Concatenate episode poses, easing each start from the previous end."""
    out = {k: [parts[0][k]] for k in POSE_KEYS}
    for prev, cur in zip(parts, parts[1:], strict=False):
        m = min(_BLEND, len(cur["x"]))
        w = _ease(m + 1, m)[1:]
        for k in POSE_KEYS:
            if k == "x":
                out[k].append(cur[k])
                continue
            last = prev[k][-1]
            if k == "yaw":  # finish the turn the short way round
                last = (last + np.pi) % (2 * np.pi) - np.pi
            head = cur[k].copy()
            head[:m] = w * head[:m] + (1 - w) * last
            out[k].append(head)
    return {k: np.concatenate(v).astype(np.float32) for k, v in out.items()}


def actor_pose(
    episodes: tuple[Episode, ...],
    fps: int,
    gait: str,
    rng: np.random.Generator,
    collision_side: float = 1.0,
) -> Pose:
    """The main actor's pose over a whole video."""
    bad_leg = "l" if rng.random() < 0.5 else "r"
    parts = [episode_pose(e, fps, gait, bad_leg, rng, collision_side) for e in episodes]
    return _join(parts)


def bystander_pose(n: int, fps: int, x: float, rng: np.random.Generator) -> Pose:
    """A second, unlabelled actor idling in the background."""
    p = rest_pose(n, x)
    _idle(p, np.arange(n) / fps, rng)
    return {k: np.asarray(v, np.float32) for k, v in p.items()}


def collider_pose(
    n: int, fps: int, impact: int, end: int, x_hit: float, side: float, rng: np.random.Generator
) -> Pose:
    """A second actor who runs into the main actor at frame ``impact`` from the side
    opposite ``side``, is knocked back, recovers and walks off.

    ``x_hit`` is where (frame widths) the collider's hip is at impact.
    """
    speed = rng.uniform(0.35, 0.45)  # frame widths per second: running
    t = (np.arange(n) - impact) / fps
    p = rest_pose(n, x_hit)
    before = t < 0
    p["x"] = np.where(before, x_hit + side * speed * t, x_hit).astype(np.float32)
    run = rest_pose(n, x_hit)
    _walk(run, np.arange(n) / fps * 1.8, side, "normal", "l", rng)
    for k in ("hip_l", "hip_r", "kn_l", "kn_r", "sh_l", "sh_r", "lean", "jy"):
        p[k] = np.where(before, run[k], p[k])
    after = slice(impact, end)
    k = knock(end - impact, fps, -side, rng)
    p["roll"][after] += k["roll"]
    p["jy"][after] -= 1.1 * np.abs(np.sin(k["roll"]))
    p["jx"][after] += k["jx"]
    p["sh_l"][after] += k["sh"]
    p["sh_r"][after] += k["sh"]
    # then walk away the way it came
    leave = np.arange(n) >= end
    away = rest_pose(n, x_hit)
    _walk(away, np.arange(n) / fps, -side, "normal", "l", rng)
    p["x"] = np.where(leave, x_hit - side * 0.15 * (np.arange(n) - end) / fps, p["x"])
    for key in ("hip_l", "hip_r", "kn_l", "kn_r", "sh_l", "sh_r", "lean"):
        p[key] = np.where(leave, away[key], p[key])
    return {k: np.asarray(v, np.float32) for k, v in p.items()}
