"""The builtin encoder: the Encoder contract, determinism, and features that see both
appearance and motion direction."""

from __future__ import annotations

import json

import numpy as np
import torch

from aamflow.stages.extract.encoders import create_encoder, encoder_names


def moving_square(direction: int, colour=(220, 40, 40), t: int = 16) -> np.ndarray:
    """uint8 ``[t, 112, 112, 3]``: a square sliding 2 px per frame over a grey frame."""
    frames = np.full((t, 112, 112, 3), 128, np.uint8)
    for i in range(t):
        x = 40 + direction * 2 * i
        frames[i, 50:66, x : x + 16] = colour
    return frames


def test_builtin_is_registered_with_its_identity() -> None:
    assert "builtin" in encoder_names()
    enc = create_encoder("builtin")
    ident = enc.identity
    assert ident.name == "builtin" and ident.dim == 512 and ident.clip_len == 16
    assert ident.weights_digest.startswith("sha256:") and len(ident.weights_digest) == 71
    assert {"resize_short", "crop", "mean", "std"} <= set(ident.preprocessing)
    json.dumps(ident.to_dict())


def test_preprocess_resizes_crops_and_normalises() -> None:
    enc = create_encoder("builtin")
    x = enc.preprocess(np.zeros((16, 120, 160, 3), np.uint8))
    assert x.shape == (3, 16, 112, 112) and x.dtype == torch.float32
    mean, std = enc.identity.preprocessing["mean"], enc.identity.preprocessing["std"]
    torch.testing.assert_close(x[:, 0, 0, 0], -torch.tensor(mean) / torch.tensor(std))
    # frame by frame: one frame at a time gives the same tensor
    frames = moving_square(1)
    whole = enc.preprocess(frames)
    torch.testing.assert_close(torch.cat([enc.preprocess(f[None]) for f in frames], 1), whole)


def test_encode_shape_and_batch_independent_determinism() -> None:
    enc = create_encoder("builtin")
    rng = np.random.default_rng(0)
    clips = [moving_square(1), moving_square(-1), rng.integers(0, 256, (16, 112, 112, 3))]
    batch = torch.stack([enc.preprocess(c.astype(np.uint8)) for c in clips])
    out = enc.encode(batch)
    assert out.shape == (3, 512) and out.dtype == torch.float32 and torch.isfinite(out).all()
    # a clip's vector is the same bytes whatever else shares its batch
    alone = torch.cat([enc.encode(batch[i : i + 1]) for i in range(3)])
    assert torch.equal(out, alone)
    again = create_encoder("builtin")
    assert again.identity.weights_digest == enc.identity.weights_digest
    assert torch.equal(again.encode(batch), out)
    other = create_encoder("builtin", seed=1)
    assert other.identity.weights_digest != enc.identity.weights_digest
    assert create_encoder("builtin", dim=64).encode(batch).shape == (3, 64)


def test_features_see_motion_direction_and_colour_but_static_clips_have_no_motion() -> None:
    enc = create_encoder("builtin")
    feats = enc.module
    right, left = moving_square(1), moving_square(-1)
    blue = moving_square(1, colour=(40, 60, 220))
    static = np.repeat(right[:1], 16, 0)
    x = torch.stack([enc.preprocess(c) for c in (right, left, blue, static)])
    with torch.inference_mode():
        raw = feats.raw(x)
    groups = feats.group_slices()
    motion, hist = raw[:, groups["motion"]], raw[:, groups["hist"]]
    u_mean = motion[:, 10]  # global cell: mean horizontal Lucas-Kanade flow
    assert u_mean[0] > 0.2 and u_mean[1] < -0.2
    assert torch.equal(motion[3], torch.zeros_like(motion[3]))
    assert (hist[0] - hist[2]).abs().max() > 0.3  # red vs blue
    torch.testing.assert_close(hist[0], hist[1], atol=1e-4, rtol=0)  # same colours
