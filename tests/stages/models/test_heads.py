"""Task heads: each fit function learns a tiny planted problem; decoding and pooling follow
the conventions of ActionFormer and RTFM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from aamflow.stages.models.ad_head import (
    fit_ad_head,
    mil_ranking_loss,
    pool_segments,
    score_clips,
)
from aamflow.stages.models.heads import HEADS, fit_ar_probe, predict_video
from aamflow.stages.models.tad_head import (
    decode_tad,
    fit_tad_head,
    nms_1d,
    pack_segments,
    pad_videos,
    seconds_to_timesteps,
    tad_loss,
    tad_targets,
    timesteps_to_seconds,
)

D = 16


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_every_head_has_the_four_functions():
    assert HEADS.names() == ["ad_mil", "ar_linear", "tad"]
    for name in HEADS:
        spec = HEADS.get(name)
        assert spec.name == name
        assert all(callable(f) for f in (spec.build, spec.loss, spec.predict, spec.fit))


# --- action recognition -----------------------------------------------------------------


def _ar_data(n_videos: int, seed: int, clips: int = 4, classes: int = 4):
    g = _gen(seed)
    means = 3 * torch.randn(classes, D, generator=_gen(99))
    y_video = torch.arange(n_videos) % classes
    y = y_video.repeat_interleave(clips)
    x = 10 + 5 * torch.randn(len(y), D, generator=g) + means[y]  # offset and scale: raw-like
    return x, y, torch.arange(n_videos).repeat_interleave(clips), y_video


def test_ar_probe_learns_planted_classes_and_is_seeded():
    x, y, _, _ = _ar_data(60, 0)
    tx, _, tvid, ty_video = _ar_data(20, 1)
    probe = fit_ar_probe(x, y, 4, epochs=30, lr=1e-2, seed=0)
    video_scores = predict_video(probe, tx, tvid)
    assert video_scores.shape == (20, 4)
    torch.testing.assert_close(video_scores.sum(1), torch.ones(20))
    assert (video_scores.argmax(1) == ty_video).float().mean() > 0.9  # chance 0.25
    again = fit_ar_probe(x, y, 4, epochs=30, lr=1e-2, seed=0)
    assert torch.equal(again.weight, probe.weight)


# --- temporal action detection ----------------------------------------------------------


def test_time_conversions_follow_actionformer():
    # 16-frame clips every 4 frames at 25 fps: clip 0 is centred on frame 8 = 0.32 s
    assert seconds_to_timesteps(0.32, 25, 4, 16) == pytest.approx(0.0)
    assert timesteps_to_seconds(10.0, 25, 4, 16) == pytest.approx((40 + 8) / 25)
    t = np.array([0.0, 1.7, 33.2])
    np.testing.assert_allclose(
        seconds_to_timesteps(timesteps_to_seconds(t, 30, 8, 32), 30, 8, 32), t
    )


def test_tad_targets_assign_the_shortest_containing_segment():
    gt = pack_segments([[(1.0, 6.0, 0), (3.0, 4.0, 2)], []])
    tg = tad_targets(gt, 8, 3)
    assert tg.pos[0].tolist() == [False, True, True, True, True, True, True, False]
    assert not tg.pos[1].any()
    assert tg.cls[0, 3].tolist() == [0.0, 0.0, 1.0]  # inside both: the short one wins
    assert tg.cls[0, 5].tolist() == [1.0, 0.0, 0.0]
    assert tg.reg[0, 5].tolist() == [4.0, 1.0]
    assert tg.cls[1].sum() == 0


def test_nms_hard_and_soft():
    segs = np.array([[0.0, 10.0], [1.0, 10.0], [20.0, 30.0]])
    scores = np.array([0.9, 0.8, 0.5])
    keep, _ = nms_1d(segs, scores, method="hard", iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    keep, kept = nms_1d(segs, scores, method="soft", sigma=0.5)
    assert keep.tolist() == [0, 2, 1]  # the duplicate survives with a decayed score
    assert kept[2] == pytest.approx(0.8 * np.exp(-(0.9**2) / 0.5))


def _tad_data(n: int, seed: int, classes: int = 3):
    """Noise sequences with class-specific directions added over the action segments."""
    g = _gen(seed)
    dirs = torch.randn(classes, D, generator=_gen(123))
    videos, segments = [], []
    for _ in range(n):
        t = int(torch.randint(48, 80, (1,), generator=g))
        x = torch.randn(t, D, generator=g)
        segs, pos = [], 2
        while True:
            length = int(torch.randint(6, 16, (1,), generator=g))
            start = pos + int(torch.randint(3, 12, (1,), generator=g))
            if start + length >= t - 2:
                break
            c = int(torch.randint(0, classes, (1,), generator=g))
            x[start : start + length] += 1.5 * dirs[c]
            segs.append((float(start), float(start + length - 1), c))
            pos = start + length
        videos.append(x)
        segments.append(segs)
    return videos, segments


def _tiou(a, b):
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / ((a[1] - a[0]) + (b[1] - b[0]) - inter)


def test_tad_head_finds_planted_segments():
    videos, segments = _tad_data(32, 0)
    head = fit_tad_head(videos, segments, 3, epochs=40, lr=1e-3, seed=0)
    test_videos, test_segments = _tad_data(8, 1)
    x, mask = pad_videos(test_videos)
    with torch.no_grad():
        cls_logits, offsets = head(x, mask)
    assert cls_logits.shape == (*mask.shape, 3) and (offsets > 0).all()
    detections = decode_tad(cls_logits, offsets, mask)
    best = []
    for dets, gts in zip(detections, test_segments, strict=True):
        for s, e, c in gts:
            top = [d for d in dets if d[3] == c][: 2 * len(gts)]
            best.append(max((_tiou((s, e), d[:2]) for d in top), default=0.0))
    assert len(best) > 15
    assert min(best) > 0.5


def test_tad_loss_ignores_padding():
    videos, segments = _tad_data(3, 2)
    head = fit_tad_head(videos, segments, 3, epochs=1, seed=0)
    x, mask = pad_videos(videos)
    tg = tad_targets(pack_segments(segments), x.shape[1], 3)
    loss = tad_loss(*head(x, mask), tg, mask)
    garbage = x.clone()
    garbage[~mask] = 1e3  # padded timesteps must not matter
    assert torch.isfinite(loss)
    torch.testing.assert_close(tad_loss(*head(garbage, mask), tg, mask), loss)


def test_head_losses_run_under_autocast():
    videos, segments = _tad_data(2, 3)
    x, mask = pad_videos(videos)
    tg = tad_targets(pack_segments(segments), x.shape[1], 3)
    tad = HEADS.get("tad").build(D, 3)
    ad = HEADS.get("ad_mil").build(D)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        l_tad = tad_loss(*tad(x, mask), tg, mask)
        l_ad = mil_ranking_loss(ad(pool_segments(x[0]))[None].expand(2, -1), torch.tensor([1, 0]))
    (l_tad + l_ad).backward()
    assert l_tad.dtype == l_ad.dtype == torch.float32
    assert torch.isfinite(l_tad) and torch.isfinite(l_ad)


# --- anomaly detection ------------------------------------------------------------------


def _rtfm_process_feat(feat: np.ndarray, length: int = 32) -> np.ndarray:
    """RTFM's utils.process_feat, transcribed as the reference."""
    new_feat = np.zeros((length, feat.shape[1]), dtype=np.float32)
    r = np.linspace(0, len(feat), length + 1, dtype=np.int64)
    for i in range(length):
        if r[i] != r[i + 1]:
            new_feat[i, :] = np.mean(feat[r[i] : r[i + 1], :], 0)
        else:
            new_feat[i, :] = feat[r[i], :]
    return new_feat


@pytest.mark.parametrize("t", [1, 5, 32, 77])
def test_segment_pooling_matches_rtfm(t):
    feat = np.random.default_rng(t).normal(size=(t, D)).astype(np.float32)
    got = pool_segments(torch.from_numpy(feat)).numpy()
    np.testing.assert_allclose(got, _rtfm_process_feat(feat), rtol=1e-5, atol=1e-6)


def test_mil_ranking_loss_ranks_abnormal_bags_above_normal_ones():
    labels = torch.tensor([1, 0])
    good = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    bad = good.flip(0)
    assert mil_ranking_loss(good, labels) < 0.01 < mil_ranking_loss(bad, labels)
    # a batch of one class has no pairs: only the smoothness/sparsity terms remain
    assert mil_ranking_loss(good[:1], labels[:1]) < 1e-3


def _ad_data(n: int, seed: int):
    """Abnormal videos carry a planted direction over a stretch of their clips."""
    g = _gen(seed)
    direction = torch.randn(D, generator=_gen(7))
    videos, labels, frames = [], [], []
    for i in range(n):
        t = int(torch.randint(12, 90, (1,), generator=g))  # some shorter than 32 segments
        x, y = torch.randn(t, D, generator=g), torch.zeros(t)
        if i % 2:
            length = max(2, t // 5)
            s = int(torch.randint(0, t - length + 1, (1,), generator=g))
            x[s : s + length] += 1.5 * direction
            y[s : s + length] = 1
        videos.append(x)
        labels.append(i % 2)
        frames.append(y)
    return videos, labels, frames


def test_ad_head_scores_planted_anomalies_higher():
    videos, labels, _ = _ad_data(40, 0)
    head = fit_ad_head(videos, labels, epochs=60, lr=1e-3, seed=0)
    test_videos, _, frames = _ad_data(20, 1)
    scores = torch.cat([score_clips(head, v) for v in test_videos])
    y = torch.cat(frames)
    assert scores.shape == y.shape
    assert roc_auc_score(y.numpy(), scores.numpy()) > 0.9
    assert scores[y == 1].mean() > scores[y == 0].mean() + 0.3
