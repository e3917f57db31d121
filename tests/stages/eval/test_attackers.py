"""Attackers: they find a planted attribute, fail once it is erased, and are reproducible."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aamflow.schemas._registry import UnknownNameError
from aamflow.stages.eval.attackers import ATTACKERS, attack, mean_by_group

ALL = tuple(ATTACKERS.names())


def planted(n_videos=200, clips=10, dim=128, k=3, signal=3.0, seed=0):
    """Features x = noise + signal * onehot(attr) @ W, one attribute value per video."""
    rng = np.random.default_rng(seed)
    attr = rng.integers(0, k, n_videos)
    w = rng.normal(size=(k, dim))
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    video = np.repeat(np.arange(n_videos), clips)
    y = attr[video]
    x = rng.normal(size=(video.size, dim)) + signal * np.eye(k)[y] @ w
    return x.astype(np.float32), y, video


def erase(x_train, y_train, *xs):
    """Project out the span of the training class means (the attribute subspace)."""
    mu = x_train.mean(axis=0)
    means = np.stack([x_train[y_train == c].mean(axis=0) - mu for c in np.unique(y_train)])
    _, s, vt = np.linalg.svd(means, full_matrices=False)
    basis = vt[s > 1e-6 * s[0]]
    return [x - (x @ basis.T) @ basis for x in (x_train, *xs)]


@pytest.fixture(scope="module")
def split():
    x, y, video = planted()
    train = video < 140  # split by video, as the eval stage does
    return x[train], y[train], video[train], x[~train], y[~train], video[~train]


def test_registry_has_the_three_attackers_and_names_valid_ones():
    assert {"linear", "mlp", "knn"} <= set(ALL)
    with pytest.raises(UnknownNameError, match="knn"):
        ATTACKERS.get("svm")


def test_every_attacker_finds_a_planted_attribute(split):
    xtr, ytr, gtr, xte, yte, _ = split
    out = attack(xtr, ytr, xte, yte, 3, attackers=ALL, groups_train=gtr)
    for name in ALL:
        m = out["attackers"][name]
        assert m["accuracy"] > out["chance"] + 0.3, name
        assert m["cmap"] > out["chance_cmap"] + 0.4, name
    assert out["strongest"] in ALL
    assert out["num_test"] == len(yte)


def test_leakage_drops_to_chance_once_the_attribute_subspace_is_erased(split):
    xtr, ytr, gtr, xte, yte, _ = split
    xtr, xte = erase(xtr, ytr, xte)
    out = attack(xtr, ytr, xte, yte, 3, attackers=ALL, groups_train=gtr)
    for name in ALL:
        m = out["attackers"][name]
        assert m["accuracy"] < out["chance"] + 0.06, (name, m, out["chance"])
        assert m["cmap"] < out["chance_cmap"] + 0.05, (name, m, out["chance_cmap"])


@pytest.mark.parametrize("name", ALL)
def test_fits_are_reproducible_and_leave_the_global_rng_alone(split, name):
    xtr, ytr, gtr, xte, _, _ = split
    spec = ATTACKERS.get(name)
    state = torch.get_rng_state()
    p1 = spec.predict_proba(spec.fit(xtr, ytr, 3, 7, groups=gtr), xte)
    p2 = spec.predict_proba(spec.fit(xtr, ytr, 3, 7, groups=gtr), xte)
    assert torch.equal(state, torch.get_rng_state())
    assert np.array_equal(p1, p2)
    assert p1.shape == (len(xte), 3)
    np.testing.assert_allclose(p1.sum(axis=1), 1.0, atol=1e-5)


def test_knn_blocks_do_not_change_the_answer(split):
    from aamflow.stages.eval.attackers import KnnConfig

    xtr, ytr, _, xte, _, _ = split
    spec = ATTACKERS.get("knn")
    big = spec.predict_proba(spec.fit(xtr, ytr, 3, 0), xte)
    small = spec.predict_proba(spec.fit(xtr, ytr, 3, 0, config=KnnConfig(max_block=3000)), xte)
    np.testing.assert_allclose(big, small, atol=1e-6)


def test_mean_by_group():
    proba = np.array([[1.0, 0.0], [0.0, 1.0], [0.2, 0.8], [0.6, 0.4]])
    groups, mean = mean_by_group(proba, np.array([5, 5, 2, 2]))
    assert groups.tolist() == [2, 5]
    np.testing.assert_allclose(mean, [[0.4, 0.6], [0.5, 0.5]])


def test_attack_scores_per_video_and_drops_unknown_labels(split):
    xtr, ytr, gtr, xte, yte, gte = split
    yte = yte.copy()
    yte[gte == gte[0]] = -1  # one test video without the attribute
    out = attack(xtr, ytr, xte, yte, 3, attackers=("linear",), groups_test=gte)
    assert out["num_test"] == len(np.unique(gte)) - 1
    assert out["attackers"]["linear"]["accuracy"] > 0.9


def test_attack_refuses_a_video_with_two_labels(split):
    xtr, ytr, _, xte, yte, gte = split
    yte = yte.copy()
    yte[0] = (yte[0] + 1) % 3
    with pytest.raises(ValueError, match="more than one label"):
        attack(xtr, ytr, xte, yte, 3, attackers=("knn",), groups_test=gte)
