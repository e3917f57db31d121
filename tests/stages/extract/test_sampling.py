"""Clip sampling: exact clip counts and frame ranges for trimmed, dense and short videos."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aamflow.schemas.errors import ConfigError
from aamflow.schemas.manifest import Sampling
from aamflow.stages.extract.sampling import (
    clip_span,
    plan_clips,
    plan_static,
    static_clip_indices,
)

DEFAULT = Sampling()  # clip_len 16, frame_stride 1, clip_stride 16, dense_stride 4


def test_trimmed_clips_are_non_overlapping_and_drop_the_tail() -> None:
    plan = plan_clips(50, DEFAULT, "ar")
    assert plan.num_clips == 3  # 0-15, 16-31, 32-47; frames 48, 49 are not covered
    np.testing.assert_array_equal(plan.start, [0, 16, 32])
    np.testing.assert_array_equal(plan.end, [16, 32, 48])
    np.testing.assert_array_equal(plan.frame_idx[1], np.arange(16, 32))
    assert plan.frame_idx.dtype == np.int64 and plan.frame_idx.shape == (3, 16)
    assert not plan.padded.any()


def test_exact_multiple_fills_every_clip() -> None:
    plan = plan_clips(48, DEFAULT, "ar")
    assert plan.num_clips == 3 and plan.end[-1] == 48


@pytest.mark.parametrize("task", ["tad", "ad"])
def test_untrimmed_dense_windows_match_videomaev2(task: str) -> None:
    """VideoMAEv2's extract_tad_feature: starts range(0, n - 15, 4) for 16-frame clips."""
    n = 70
    plan = plan_clips(n, DEFAULT, task)
    np.testing.assert_array_equal(plan.start, list(range(0, n - 15, 4)))
    assert plan.num_clips == 14  # starts 0..52
    np.testing.assert_array_equal(plan.end, plan.start + 16)
    np.testing.assert_array_equal(plan.frame_idx[-1], np.arange(52, 68))


def test_frame_stride_spreads_clip_frames() -> None:
    s = Sampling(clip_len=4, frame_stride=3, clip_stride=10, dense_stride=2)
    assert clip_span(4, 3) == 10
    ar = plan_clips(31, s, "ar")
    np.testing.assert_array_equal(ar.frame_idx, [[0, 3, 6, 9], [10, 13, 16, 19], [20, 23, 26, 29]])
    np.testing.assert_array_equal(ar.end, [10, 20, 30])
    dense = plan_clips(13, s, "tad")
    np.testing.assert_array_equal(dense.start, [0, 2])
    np.testing.assert_array_equal(dense.frame_idx[1], [2, 5, 8, 11])


def test_short_video_gives_one_padded_clip() -> None:
    plan = plan_clips(5, DEFAULT, "ar")
    assert plan.num_clips == 1 and plan.padded.tolist() == [True]
    np.testing.assert_array_equal(plan.frame_idx[0], [0, 1, 2, 3, 4] + [4] * 11)
    assert (plan.start[0], plan.end[0]) == (0, 5)
    strided = plan_clips(6, Sampling(clip_len=4, frame_stride=2), "tad")
    np.testing.assert_array_equal(strided.frame_idx[0], [0, 2, 4, 4])
    assert plan_clips(1, DEFAULT, "ad").frame_idx.tolist() == [[0] * 16]


def test_a_video_of_exactly_one_span_is_not_padded() -> None:
    plan = plan_clips(16, DEFAULT, "tad")
    assert plan.num_clips == 1 and not plan.padded[0]


def test_bad_inputs() -> None:
    with pytest.raises(ConfigError, match="unknown video task 'cls'"):
        plan_clips(40, DEFAULT, "cls")
    with pytest.raises(ValueError):
        plan_clips(0, DEFAULT, "ar")


def test_select_slices_a_plan() -> None:
    plan = plan_clips(70, DEFAULT, "tad").select(2, 5)
    assert plan.num_clips == 3 and plan.start.tolist() == [8, 12, 16]


def test_static_frames_are_bin_centres() -> None:
    np.testing.assert_array_equal(plan_static(100, 10, 16), np.arange(5, 100, 10))
    np.testing.assert_array_equal(plan_static(40, 4, 16), [5, 15, 25, 35])
    short = plan_static(3, 10, 16)  # fewer frames than static clips: repeats, always 10
    assert len(short) == 10 and set(short.tolist()) == {0, 1, 2}
    assert plan_static(7, 0, 16).shape == (0,)
    np.testing.assert_array_equal(static_clip_indices(np.array([3, 9]), 4), [[3] * 4, [9] * 4])


@given(
    n=st.integers(1, 400),
    clip_len=st.integers(1, 16),
    frame_stride=st.integers(1, 4),
    step=st.integers(1, 20),
    task=st.sampled_from(["ar", "tad"]),
)
def test_plan_invariants(n: int, clip_len: int, frame_stride: int, step: int, task: str) -> None:
    s = Sampling(clip_len=clip_len, frame_stride=frame_stride, clip_stride=step, dense_stride=step)
    plan = plan_clips(n, s, task)
    span = clip_span(clip_len, frame_stride)
    assert plan.frame_idx.shape == (plan.num_clips, clip_len)
    assert plan.frame_idx.min() >= 0 and plan.frame_idx.max() < n
    assert (plan.end <= n).all()
    if n >= span:
        assert plan.num_clips == (n - span) // step + 1
        assert (plan.end - plan.start == span).all()
        # the plan for fewer frames is a prefix: the loader relies on it after a short decode
        shorter = plan_clips(max(span, n - 7), s, task)
        np.testing.assert_array_equal(shorter.frame_idx, plan.frame_idx[: shorter.num_clips])
    else:
        assert plan.num_clips == 1 and plan.padded[0]
    static = plan_static(n, 10, clip_len)
    assert len(static) == 10 and static.min() >= 0 and static.max() < n
    assert (np.diff(static) >= 0).all()
