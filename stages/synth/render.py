"""Rasterise plans into RGB frames with numpy: background, actors, lighting and noise.

Actors are a head, torso, arms and legs drawn as discs, capsules and a quad, vectorised over
frames inside a per-chunk bounding box. Appearance carries the private attributes (skin
tone, body shape and hair length for gender, clothing colour or stripes); everything else
(hair, trousers, background, light, noise) is nuisance drawn from the video's own seed.
"""

from __future__ import annotations

import colorsys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .motion import Pose, actor_pose, bystander_pose, collider_pose
from .plan import VideoPlan, draw_attributes

CHUNK = 16  # frames rasterised together

# palette codes of the label map
HAIR, SKIN, CLOTH, CLOTH_ALT, PANTS, SHOES = 1, 2, 3, 4, 5, 6

SKIN_RGB = {"light": (236, 200, 172), "medium": (190, 138, 98), "dark": (105, 70, 50)}
CLOTH_RGB = {
    "red": ((200, 38, 42), None),
    "green": ((40, 150, 62), None),
    "blue": ((42, 72, 192), None),
    "striped": ((232, 232, 222), (38, 38, 48)),
}
HAIR_RGB = ((28, 22, 20), (78, 52, 32), (196, 162, 98), (124, 62, 34), (150, 148, 144))
PANTS_RGB = ((42, 48, 72), (62, 62, 64), (150, 132, 98), (84, 66, 48), (28, 28, 34))
SHOES_RGB = ((22, 22, 22), (92, 62, 42), (205, 205, 200))

# body proportions in body units (1/8 of the height)
THIGH, SHIN, TORSO, NECK = 1.95, 1.95, 2.7, 0.3
UPPER_ARM, FOREARM = 1.45, 1.3
HEAD_R = 0.64
SHAPE = {  # gender proxy: shoulder and hip half-widths, long hair, relative height
    "m": (1.2, 0.6, False, 1.0),
    "f": (0.74, 1.0, True, 0.94),
}
LONG_HAIR = (2.5, 1.12)  # length below the head centre and radius, in head radii


@dataclass(frozen=True, kw_only=True)
class Body:
    """One actor's fixed appearance."""

    height: float  # pixels
    shoulder: float  # half-width, body units
    hip: float
    long_hair: bool
    palette: np.ndarray  # [7, 3] float32, indexed by the palette codes
    stripe: float  # stripe period in pixels; 0 = plain clothing


def _jitter(rng: np.random.Generator, rgb: tuple[int, int, int], amount: float) -> np.ndarray:
    shift = rng.uniform(-amount, amount) + rng.uniform(-amount / 2, amount / 2, 3)
    return np.clip(np.asarray(rgb, np.float32) + shift, 0, 255)


def make_body(attributes: dict[str, str], rng: np.random.Generator, height: float) -> Body:
    """An actor with the given private attributes and random nuisance appearance."""
    shoulder, hip, long_hair, stature = SHAPE[attributes["gender"]]
    cloth, cloth_alt = CLOTH_RGB[attributes["clothing"]]
    palette = np.zeros((7, 3), np.float32)
    palette[HAIR] = _jitter(rng, HAIR_RGB[rng.integers(len(HAIR_RGB))], 10)
    palette[SKIN] = _jitter(rng, SKIN_RGB[attributes["skin_tone"]], 10)
    palette[CLOTH] = _jitter(rng, cloth, 16)
    palette[CLOTH_ALT] = _jitter(rng, cloth_alt or cloth, 16)
    palette[PANTS] = _jitter(rng, PANTS_RGB[rng.integers(len(PANTS_RGB))], 12)
    palette[SHOES] = _jitter(rng, SHOES_RGB[rng.integers(len(SHOES_RGB))], 10)
    return Body(
        height=height * stature,
        shoulder=shoulder * rng.uniform(0.95, 1.05),
        hip=hip * rng.uniform(0.95, 1.05),
        long_hair=long_hair,
        palette=palette,
        stripe=float(rng.uniform(4.0, 6.0)) if cloth_alt else 0.0,
    )


# ------------------------------------------------------------------ skeleton


def _skeleton(pose: Pose, body: Body, width: int, ground: float) -> dict[str, np.ndarray]:
    """Joint positions in pixels, each an array ``[2, T]`` (x, y)."""
    u = body.height / 8.0
    c = np.cos(pose["yaw"])
    wq = np.maximum(np.abs(c), 0.45)  # a turned torso keeps some depth
    lean = pose["lean"]
    up = np.stack([np.sin(lean), -np.cos(lean)])
    perp = np.stack([np.cos(lean), np.sin(lean)])
    pts: dict[str, np.ndarray] = {}
    # body frame: origin at the hip centre, y down, pixels
    ext = [
        THIGH * np.cos(pose[f"hip_{s}"]) + SHIN * np.cos(pose[f"hip_{s}"] + pose[f"kn_{s}"])
        for s in "lr"
    ]
    hip_to_ground = (np.maximum(ext[0], ext[1]) + 0.25) * u
    for s, sign in (("l", -1.0), ("r", 1.0)):
        hj = np.stack([sign * c * (body.hip - 0.4) * u, np.zeros_like(c)])
        a, k = pose[f"hip_{s}"], pose[f"kn_{s}"]
        knee = hj + THIGH * u * np.stack([c * np.sin(a), np.cos(a)])
        ankle = knee + SHIN * u * np.stack([c * np.sin(a + k), np.cos(a + k)])
        pts[f"hipj_{s}"], pts[f"knee_{s}"], pts[f"ankle_{s}"] = hj, knee, ankle
    sc = up * TORSO * u
    pts["neck"] = sc
    pts["head"] = sc + up * (NECK + HEAD_R) * u
    pts["hair_end"] = pts["head"] - up * LONG_HAIR[0] * HEAD_R * u
    pts["cap"] = pts["head"] + up * 0.22 * HEAD_R * u
    pts["face"] = pts["head"] - up * 0.12 * HEAD_R * u
    for s, sign in (("l", -1.0), ("r", 1.0)):
        sh = sc + perp * sign * c * (body.shoulder - 0.25) * u
        a, e = pose[f"sh_{s}"], pose[f"el_{s}"]
        elbow = sh + UPPER_ARM * u * np.stack([sign * c * np.sin(a), np.cos(a)])
        wrist = elbow + FOREARM * u * np.stack([sign * c * np.sin(a + e), np.cos(a + e)])
        pts[f"sh_{s}"], pts[f"elbow_{s}"], pts[f"wrist_{s}"] = sh, elbow, wrist
        pts[f"tq_{s}"] = sc + perp * sign * wq * body.shoulder * u
        pts[f"bq_{s}"] = perp * sign * wq * body.hip * u
    # tip the whole body about the feet, then place it in the frame
    pivot = np.stack([np.zeros_like(c), hip_to_ground])
    cr, sr = np.cos(pose["roll"]), np.sin(pose["roll"])
    origin = np.stack(
        [
            pose["x"] * width + pose["jx"] * u,
            ground - hip_to_ground - (pose["lift"] - pose["jy"]) * u,
        ]
    )
    out = {}
    for name, p in pts.items():
        d = p - pivot
        rot = np.stack([cr * d[0] - sr * d[1], sr * d[0] + cr * d[1]])
        out[name] = (pivot + rot + origin).astype(np.float32)
    out["back"] = (c < 0).astype(np.float32)[None]  # facing away: the head shows hair
    return out


# ------------------------------------------------------------------ rasterising


def _capsule(X, Y, a, b, r):
    """Inside test for the segment a-b thickened by r; a, b are ``[2, T]``."""
    ax, ay = a[0][:, None, None], a[1][:, None, None]
    bx = (b[0] - a[0])[:, None, None]
    by = (b[1] - a[1])[:, None, None]
    inv = 1.0 / np.maximum(bx * bx + by * by, 1e-6)
    dx, dy = X - ax, Y - ay
    h = np.clip((dx * bx + dy * by) * inv, 0.0, 1.0)
    ex, ey = dx - h * bx, dy - h * by
    return ex * ex + ey * ey <= r * r


def _disc(X, Y, c, r):
    dx = X - c[0][:, None, None]
    dy = Y - c[1][:, None, None]
    return dx * dx + dy * dy <= r * r


def _quad(X, Y, corners):
    """Inside test for a convex quad given as four ``[2, T]`` corners in order."""
    xs = np.stack([p[0] for p in corners])  # [4, T]
    ys = np.stack([p[1] for p in corners])
    area = np.sum(xs * np.roll(ys, -1, 0) - np.roll(xs, -1, 0) * ys, axis=0)
    flip = np.sign(area)[:, None, None]
    inside = None
    for i in range(4):
        j = (i + 1) % 4
        ex = (xs[j] - xs[i])[:, None, None]
        ey = (ys[j] - ys[i])[:, None, None]
        side = ((X - xs[i][:, None, None]) * ey - (Y - ys[i][:, None, None]) * ex) * flip
        inside = side <= 0 if inside is None else inside & (side <= 0)
    return inside


def _draw_actor(frames: np.ndarray, sk: dict[str, np.ndarray], body: Body) -> None:
    """Paint one actor into ``frames`` [T, H, W, 3] (float32) in place."""
    T, H, W, _ = frames.shape
    u = body.height / 8.0
    r_head = HEAD_R * u
    joints = [v for k, v in sk.items() if k != "back"]
    allx = np.stack([p[0] for p in joints])  # [J, T]
    ally = np.stack([p[1] for p in joints])
    pad = r_head + 1.5
    x0 = np.floor(allx.min(0) - pad).astype(int)
    y0 = np.floor(ally.min(0) - pad).astype(int)
    cw = int(np.ceil((allx.max(0) - allx.min(0)).max() + 2 * pad)) + 1
    ch = int(np.ceil((ally.max(0) - ally.min(0)).max() + 2 * pad)) + 1
    if (x0 + cw <= 0).all() or (x0 >= W).all() or (y0 + ch <= 0).all() or (y0 >= H).all():
        return
    X = (x0[:, None, None] + np.arange(cw)[None, None, :] + 0.5).astype(np.float32)
    Y = (y0[:, None, None] + np.arange(ch)[None, :, None] + 0.5).astype(np.float32)
    lab = np.zeros((T, ch, cw), np.uint8)

    def paint(mask, code):
        np.putmask(lab, mask, code)

    if body.long_hair:
        paint(_capsule(X, Y, sk["head"], sk["hair_end"], LONG_HAIR[1] * r_head), HAIR)
    for s in "lr":
        paint(_capsule(X, Y, sk[f"hipj_{s}"], sk[f"knee_{s}"], 0.44 * u), PANTS)
        paint(_capsule(X, Y, sk[f"knee_{s}"], sk[f"ankle_{s}"], 0.37 * u), PANTS)
        paint(_disc(X, Y, sk[f"ankle_{s}"], 0.36 * u), SHOES)
    torso = _quad(X, Y, [sk["tq_l"], sk["bq_l"], sk["bq_r"], sk["tq_r"]])
    torso |= _capsule(X, Y, sk["sh_l"], sk["sh_r"], 0.34 * u)
    if body.stripe:
        # stripes run across the torso and move with it
        axis = sk["neck"] - (sk["bq_l"] + sk["bq_r"]) / 2
        axis = axis / np.maximum(np.hypot(axis[0], axis[1]), 1e-6)
        along = (X - sk["neck"][0][:, None, None]) * axis[0][:, None, None] + (
            Y - sk["neck"][1][:, None, None]
        ) * axis[1][:, None, None]
        alt = np.floor(along * (2.0 / body.stripe)).astype(np.int32) & 1
        paint(torso & (alt == 0), CLOTH)
        paint(torso & (alt == 1), CLOTH_ALT)
    else:
        paint(torso, CLOTH)
    paint(_capsule(X, Y, sk["neck"], sk["head"], 0.3 * u), SKIN)
    paint(_disc(X, Y, sk["cap"], r_head), HAIR)
    face = _disc(X, Y, sk["face"], 0.9 * r_head)
    back = sk["back"][0][:, None, None] > 0
    paint(face & back, HAIR)
    paint(face & ~back, SKIN)
    for s in "lr":
        paint(_capsule(X, Y, sk[f"sh_{s}"], sk[f"elbow_{s}"], 0.33 * u), CLOTH)
        paint(_capsule(X, Y, sk[f"elbow_{s}"], sk[f"wrist_{s}"], 0.28 * u), SKIN)
        paint(_disc(X, Y, sk[f"wrist_{s}"], 0.34 * u), SKIN)
    colours = body.palette[lab]  # [T, ch, cw, 3]
    for t in range(T):
        fx0, fy0 = max(x0[t], 0), max(y0[t], 0)
        fx1, fy1 = min(x0[t] + cw, W), min(y0[t] + ch, H)
        if fx1 <= fx0 or fy1 <= fy0:
            continue
        sub = (slice(fy0 - y0[t], fy1 - y0[t]), slice(fx0 - x0[t], fx1 - x0[t]))
        m = lab[t][sub] > 0
        region = frames[t, fy0:fy1, fx0:fx1]
        region[m] = colours[t][sub][m]


# ------------------------------------------------------------------ scene


def _muted(rng: np.random.Generator, value: tuple[float, float]) -> np.ndarray:
    """A desaturated colour, so clothing and skin stay the saturated things in view."""
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.04, 0.28), rng.uniform(*value))
    return np.array([r, g, b], np.float32) * 255


def background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, float]:
    """A static room: wall with panels, floor, soft texture. Returns (image, ground y)."""
    H = W = size
    ground = float(rng.uniform(0.86, 0.94) * H)
    horizon = int(ground - rng.uniform(0.16, 0.3) * H)
    img = np.empty((H, W, 3), np.float32)
    wall, floor = _muted(rng, (0.45, 0.85)), _muted(rng, (0.3, 0.6))
    shade = np.linspace(1.08, 0.92, H, dtype=np.float32)[:, None, None]
    img[:] = wall
    img[horizon:] = floor
    for _ in range(int(rng.integers(1, 4))):  # windows, doors, posters: low contrast
        w, h = rng.integers(W // 8, W // 3), rng.integers(H // 8, H // 2)
        x, y = rng.integers(0, W - w), rng.integers(0, max(horizon - h, 1))
        img[y : y + h, x : x + w] = 0.6 * wall + 0.4 * _muted(rng, (0.3, 0.95))
    img *= shade
    # low-frequency texture: a coarse random grid, bilinearly upsampled
    g = rng.normal(0, 5, (6, 6)).astype(np.float32)
    interp = np.clip(np.linspace(0, 5, H) - np.arange(6)[:, None], -1, 1)
    interp = np.maximum(1 - np.abs(interp), 0).astype(np.float32)  # [6, H]
    img += (interp.T @ g @ interp)[:, :, None]
    return img, ground


@lru_cache(maxsize=4)
def _noise_pool(size: int) -> np.ndarray:
    # a fixed pool of noise frames, indexed per frame: cheap and deterministic
    return np.random.default_rng(0x0A15E).standard_normal((24, size, size, 3)).astype(np.float32)


def _lighting(rng: np.random.Generator, n: int, fps: int) -> np.ndarray:
    """Per-frame RGB gain: a global level and tint with a slow drift."""
    t = np.arange(n) / fps
    level = rng.uniform(0.82, 1.12)
    drift = 1 + rng.uniform(0.0, 0.07) * np.sin(
        2 * np.pi * t / rng.uniform(3, 9) + rng.uniform(0, 7)
    )
    tint = 1 + rng.normal(0, 0.03, 3)
    return (level * drift[:, None] * tint[None, :]).astype(np.float32)


@dataclass(frozen=True)
class _Actor:
    body: Body
    pose: Pose
    ground: float


def _scene(plan: VideoPlan, rng: np.random.Generator) -> tuple[np.ndarray, list[_Actor]]:
    size, fps, n = plan.size, plan.fps, plan.num_frames
    bg, ground = background(rng, size)
    body = make_body(plan.attributes, rng, height=rng.uniform(0.56, 0.64) * size)
    side = 1.0 if rng.random() < 0.5 else -1.0  # the way a collider travels
    pose = actor_pose(plan.episodes, fps, plan.attributes["gait"], rng, collision_side=side)
    actors = [_Actor(body, pose, ground)]
    hits = [e for e in plan.episodes if e.kind == "collision"]
    if hits:
        e = hits[0]
        other = make_body(draw_attributes(rng), rng, height=body.height * rng.uniform(0.92, 1.05))
        x_hit = float(pose["x"][e.start] - side * 0.13)
        cp = collider_pose(n, fps, e.start, e.end, x_hit, side, rng)
        actors.append(_Actor(other, cp, ground))
    elif plan.extra_actor:
        other = make_body(draw_attributes(rng), rng, height=body.height * rng.uniform(0.65, 0.75))
        mean_x = float(pose["x"].mean())
        x = rng.uniform(0.1, 0.3) if mean_x > 0.5 else rng.uniform(0.7, 0.9)
        far = ground - rng.uniform(0.05, 0.09) * size
        actors.insert(0, _Actor(other, bystander_pose(n, fps, x, rng), far))  # behind
    return bg, actors


def render_video(plan: VideoPlan) -> Iterator[np.ndarray]:
    """Yield the video's frames as uint8 chunks ``[<=CHUNK, H, W, 3]``; deterministic."""
    rng = np.random.default_rng(plan.seed)
    bg, actors = _scene(plan, rng)
    n = plan.num_frames
    light = _lighting(rng, n, plan.fps)
    pool = _noise_pool(plan.size)
    noise_idx = rng.integers(0, len(pool), n)
    sigma = np.float32(rng.uniform(2.0, 4.0))
    skeletons = [
        _skeleton(a.pose, a.body, plan.size, a.ground) for a in actors
    ]  # whole-video joints: cheap, 1-D per joint
    for t0 in range(0, n, CHUNK):
        t1 = min(t0 + CHUNK, n)
        frames = np.repeat(bg[None], t1 - t0, axis=0)
        for actor, sk in zip(actors, skeletons, strict=True):
            _draw_actor(frames, {k: v[:, t0:t1] for k, v in sk.items()}, actor.body)
        frames *= light[t0:t1, None, None, :]
        frames += sigma * pool[noise_idx[t0:t1]]
        yield np.clip(frames + 0.5, 0, 255).astype(np.uint8)
