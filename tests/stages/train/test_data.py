"""Training data: roles from the store, latent reads, chunk planning and on-device sampling.

The sampler tests plant each latent's identity in its first two features (video, index), so
what a step drew can be read back from the features themselves.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from aamflow.schemas.store import open_store
from aamflow.stages.train.data import (
    Latents,
    VideoRoles,
    build_train_data,
    epoch_orders,
    labelled_tasks,
    plan_chunks,
    plan_steps,
    prefetched,
    read_latents,
    sample_step,
    video_roles,
)

D = 4


def planted(static_counts, clip_counts) -> Latents:
    """Latents whose rows are (video, index within video, 0, 0)."""

    def rows(counts):
        return np.asarray(
            [[v, i, 0, 0] for v, c in enumerate(counts) for i in range(c)], np.float32
        ).reshape(-1, D)

    sc, cc = np.asarray(static_counts), np.asarray(clip_counts)
    return Latents(
        rows=np.arange(len(sc)),
        static=rows(sc),
        static_start=np.cumsum(sc) - sc,
        static_count=sc,
        clips=rows(cc),
        clip_start=np.cumsum(cc) - cc,
        clip_count=cc,
    )


def roles_for(n: int, **over) -> VideoRoles:
    base = dict(
        rows=np.arange(n),
        part=np.zeros(n, np.int64),
        static_count=np.full(n, 3),
        clip_count=np.full(n, 5),
        lb=np.ones(n, bool),
        ar_label=np.full(n, -1),
        tad=np.zeros(n, bool),
        tad_segments=tuple(np.zeros((0, 3), np.float32) for _ in range(n)),
        ad_label=np.full(n, -1),
    )
    base.update(over)
    return VideoRoles(**base)


def test_static_pairs_are_two_distinct_clips_of_one_video_with_its_own_clip() -> None:
    n = 10
    static_counts = [2, 3, 10, 4, 2, 5, 6, 2, 3, 7]
    lat = planted(static_counts, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    data = build_train_data(lat, roles_for(n), (), tad_window=8)
    gen = torch.Generator().manual_seed(0)
    plan = plan_steps(data, batch_size=4, tasks=())
    assert plan.steps == 2 and plan.batch == 4  # 10 // 4, the partial batch is dropped
    seen = set()
    for _ in range(50):
        orders = epoch_orders(data, plan, gen)
        assert len(set(orders["lb"].flatten().tolist())) == 8  # a permutation: no repeats
        for k in range(plan.steps):
            b = sample_step(data, orders, k, gen)
            a, s2, lc = b.x[:4], b.x[4:8], b.x[8:12]
            assert torch.equal(a[:, 0], s2[:, 0]) and torch.equal(a[:, 0], lc[:, 0])
            assert (a[:, 1] != s2[:, 1]).all()
            counts = torch.tensor(static_counts)[a[:, 0].long()]
            assert (a[:, 1] < counts).all() and (s2[:, 1] < counts).all()
            seen.update(zip(a[:, 0].tolist(), a[:, 1].tolist(), s2[:, 1].tolist(), strict=True))
    # every ordered pair of a 2-clip video shows up: both directions are drawn
    assert (0.0, 0.0, 1.0) in seen and (0.0, 1.0, 0.0) in seen


def test_task_batches_cover_every_task_video_each_epoch() -> None:
    n = 12
    ar = np.where(np.arange(n) % 3 == 0, np.arange(n) % 4, -1)
    ad = np.where(np.arange(n) % 3 == 2, np.arange(n) % 2, -1)
    segs = tuple(
        np.asarray([[1.0, 3.0, 2.0]], np.float32) if v % 3 == 1 else np.zeros((0, 3), np.float32)
        for v in range(n)
    )
    clip_counts = [5 + v for v in range(n)]
    roles = roles_for(n, ar_label=ar, ad_label=ad, tad=np.arange(n) % 3 == 1, tad_segments=segs)
    data = build_train_data(planted([3] * n, clip_counts), roles, ("ar", "tad", "ad"), tad_window=6)
    gen = torch.Generator().manual_seed(1)
    plan = plan_steps(data, batch_size=5, tasks=("ar", "tad", "ad"))
    assert plan.steps == 2 and plan.per_task == {"ar": 2, "tad": 2, "ad": 2}
    orders = epoch_orders(data, plan, gen)
    for task in ("ar", "tad", "ad"):
        assert sorted(orders[task].flatten().tolist()) == [0, 1, 2, 3]
    b = sample_step(data, orders, 0, gen)
    sizes = b.sizes
    assert list(sizes) == ["static_a", "static_b", "lc", "ar", "tad", "ad"]
    ar_x, tad_x, ad_x = torch.split(b.x[15:], [sizes["ar"], sizes["tad"], sizes["ad"]])
    # AR: one clip of an AR video, with that video's label
    assert (ar_x[:, 0] % 3 == 0).all() and torch.equal(b.ar_label, ar_x[:, 0].long() % 4)
    # TAD: a window of 6 consecutive clips of one video; the shorter ones padded and masked
    win = tad_x.view(2, 6, D)
    assert (win[..., 0] == win[:, :1, 0]).all() and (win[:, 0, 0] % 3 == 1).all()
    steps = win[..., 1]
    assert torch.equal(steps[b.tad_mask], (steps[:, :1] + torch.arange(6))[b.tad_mask])
    assert torch.equal(b.lc_weight[15 + 2 : 15 + 2 + 12], b.tad_mask.flatten().float())
    # the segment moves with the window: start_t - offset
    assert torch.allclose(b.tad_gt[:, 0, 0], 1.0 - steps[:, 0])
    # AD: 32 segment clips per video, in order, each inside the video
    bag = ad_x.view(2, 32, D)
    assert (bag[..., 0] == bag[:, :1, 0]).all() and (bag[:, 0, 0] % 3 == 2).all()
    assert (bag[..., 1].diff(dim=1) >= 0).all()
    assert torch.equal(b.ad_label, bag[:, 0, 0].long() % 2)


def test_sampling_is_seeded() -> None:
    data = build_train_data(planted([3] * 6, [4] * 6), roles_for(6), (), tad_window=4)
    plan = plan_steps(data, 4, ())

    def draw(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return sample_step(data, epoch_orders(data, plan, gen), 0, gen).x

    assert torch.equal(draw(3), draw(3)) and not torch.equal(draw(3), draw(4))


def test_roles_and_latents_from_a_store(train_store: Path) -> None:
    store = open_store(train_store)
    roles = video_roles(store, "train")
    assert len(roles) == 18 and roles.lb.all()
    assert labelled_tasks(roles) == {"ar": "", "tad": "", "ad": ""}
    tad = roles.select(roles.tad)
    # fake segments are 1 s..3 s at 16 fps, clips of 16 frames every 16: timesteps 0.5..2.5
    assert np.allclose(tad.tad_segments[0][0, :2], [0.5, 2.5])
    rows = np.asarray([17, 3, 9, 4])  # parts 2, 0, 1, 0: read part by part
    lat = read_latents(store, rows, frames=True)
    assert lat.rows.tolist() == [17, 3, 4, 9]
    for i, row in enumerate(lat.rows):
        v = store.video(int(row))
        s, c = lat.static_start[i], lat.static_count[i]
        np.testing.assert_array_equal(lat.static[s : s + c], v.static_features)
        s, c = lat.clip_start[i], lat.clip_count[i]
        np.testing.assert_array_equal(lat.clips[s : s + c], v.clip_features)
        np.testing.assert_array_equal(lat.clip_frame_start[s : s + c], v.clip_frames[:, 0])


def test_plan_chunks_respects_the_budget_and_the_order() -> None:
    sizes = [10, 30, 20, 50, 5]
    assert plan_chunks(sizes, [4, 0, 2, 1, 3], 40) == [[4, 0, 2], [1], [3]]
    assert plan_chunks(sizes, [3, 1], 10) == [[3], [1]]  # oversized parts stand alone


def test_plan_chunks_fills_a_batch_before_closing_a_chunk() -> None:
    sizes, videos = [10, 10, 10, 10], [3, 1, 4, 1]
    # 4 videos per batch: part 1 joins part 0 beyond the budget, the short tail joins too
    assert plan_chunks(sizes, [0, 1, 2, 3], 10, videos, 4) == [[0, 1], [2, 3]]
    assert plan_chunks(sizes, [0, 1, 2, 3], 10, videos, 9) == [[0, 1, 2, 3]]


def test_prefetched_loads_the_next_item_in_the_background() -> None:
    threads = []

    def load(i: int) -> int:
        threads.append(threading.current_thread().name)
        return i * i

    assert list(prefetched(load, [1, 2, 3])) == [1, 4, 9]
    assert all(t.startswith("aamflow-prefetch") for t in threads)
