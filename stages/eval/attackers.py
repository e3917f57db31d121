"""Privacy attackers: probes trained after the fact to read a private attribute from features.

An attacker is a pair of plain functions registered in :data:`ATTACKERS`:

- ``fit(train_x, train_y, num_classes, seed, *, groups=None) -> fitted``
- ``predict_proba(fitted, x) -> float32 [N, K]``

Three are built in, from weak to strong:

- ``linear``: multinomial logistic regression on standardised features, full-batch L-BFGS with
  an L2 penalty.
- ``mlp``: the paper's 2-layer probe ``Linear(d, d) -> ReLU -> Linear(d, K)`` on standardised
  features, Adam, early stopping on held-out training videos (``groups``).
- ``knn``: cosine k-nearest neighbours on standardised features, votes weighted by
  ``exp(cos / 0.07)``; probabilities are the weighted vote shares.

All run with torch on the CPU, seeded locally (the caller's global RNG state is left untouched)
so that repeated runs give identical numbers. :func:`attack` fits the chosen attackers on one
split and scores them on the other.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from aamflow.schemas._registry import Registry
from aamflow.stages.models.heads import fit_logistic

from . import metrics

__all__ = [
    "ATTACKERS",
    "Attacker",
    "KnnConfig",
    "LinearConfig",
    "MlpConfig",
    "attack",
    "mean_by_group",
]


@dataclass(frozen=True, kw_only=True)
class Attacker:
    """One registered attacker: its name and its two functions."""

    name: str
    fit: Callable[..., Any]
    predict_proba: Callable[[Any, np.ndarray], np.ndarray]


ATTACKERS: Registry[Attacker] = Registry("attacker")


@dataclass(frozen=True, kw_only=True)
class LinearConfig:
    """Logistic-regression probe settings."""

    weight_decay: float = 1e-3  # L2 on the weights of the mean cross-entropy (not the bias)
    max_iter: int = 300


@dataclass(frozen=True, kw_only=True)
class MlpConfig:
    """2-layer MLP probe settings."""

    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    max_epochs: int = 100
    patience: int = 10  # epochs without a better held-out loss before stopping
    val_fraction: float = 0.2  # share of training videos held out for early stopping


@dataclass(frozen=True, kw_only=True)
class KnnConfig:
    """Cosine kNN settings."""

    k: int = 10
    temperature: float = 0.07  # vote weight exp(cos / T), as in DINO's kNN evaluation
    max_block: int = 1 << 24  # similarity entries computed at once (bounds memory)


# ---------------------------------------------------------------------------- shared helpers


@dataclass(frozen=True, kw_only=True)
class _Standardizer:
    mean: np.ndarray
    scale: np.ndarray

    def __call__(self, x: np.ndarray) -> torch.Tensor:
        z = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        return torch.from_numpy(z.astype(np.float32))


def _standardizer(x: np.ndarray) -> _Standardizer:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"features must be a non-empty [N, D] array, got shape {x.shape}")
    std = x.std(axis=0)
    # Constant columns carry nothing; keep them at 0 rather than dividing by ~0.
    return _Standardizer(mean=x.mean(axis=0), scale=np.where(std > 1e-8, std, 1.0))


def _check_labels(y: np.ndarray, num_classes: int, n: int) -> torch.Tensor:
    y = np.asarray(y).ravel()
    if y.size != n:
        raise ValueError(f"{n} feature rows but {y.size} labels")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{y.min()}, {y.max()}]")
    return torch.from_numpy(y.astype(np.int64))


def _split_groups(
    n: int, groups: np.ndarray | None, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray] | None:
    """Hold out a fraction of the groups (videos); None when too few to hold any out."""
    g = np.arange(n) if groups is None else np.asarray(groups).ravel()
    if g.size != n:
        raise ValueError(f"{n} feature rows but {g.size} group ids")
    uniq = np.unique(g)
    n_val = int(round(fraction * uniq.size))
    if uniq.size < 5 or n_val < 1:
        return None
    val_groups = rng.permutation(uniq)[:n_val]
    is_val = np.isin(g, val_groups)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's CPU RNG for a block, restoring the caller's RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# ------------------------------------------------------------------------------------ linear


@dataclass(frozen=True, kw_only=True)
class _LinearFit:
    scaler: _Standardizer
    model: nn.Linear


def _fit_linear(
    train_x: np.ndarray,
    train_y: np.ndarray,
    num_classes: int,
    seed: int,
    *,
    groups: np.ndarray | None = None,
    config: LinearConfig = LinearConfig(),
) -> _LinearFit:
    scaler = _standardizer(train_x)
    x = scaler(train_x)
    y = _check_labels(train_y, num_classes, x.shape[0])
    with _seeded(seed):
        model = fit_logistic(
            x, y, num_classes, max_iter=config.max_iter, weight_decay=config.weight_decay
        )
    return _LinearFit(scaler=scaler, model=model)


def _proba_linear(fitted: _LinearFit, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(fitted.model(fitted.scaler(x)), dim=1).numpy()


ATTACKERS.register("linear")(Attacker(name="linear", fit=_fit_linear, predict_proba=_proba_linear))


# --------------------------------------------------------------------------------------- mlp


@dataclass(frozen=True, kw_only=True)
class _MlpFit:
    scaler: _Standardizer
    model: nn.Sequential
    epochs: int


def _fit_mlp(
    train_x: np.ndarray,
    train_y: np.ndarray,
    num_classes: int,
    seed: int,
    *,
    groups: np.ndarray | None = None,
    config: MlpConfig = MlpConfig(),
) -> _MlpFit:
    scaler = _standardizer(train_x)
    x_all = scaler(train_x)
    y_all = _check_labels(train_y, num_classes, x_all.shape[0])
    split = _split_groups(len(y_all), groups, config.val_fraction, np.random.default_rng(seed))
    if split is None:
        tr, val = np.arange(len(y_all)), None
    else:
        tr, val = split
    x, y = x_all[tr], y_all[tr]
    d = x.shape[1]
    with _seeded(seed):
        model = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, num_classes))
        opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        gen = torch.Generator().manual_seed(seed)
        best, best_loss, stale, epochs = copy.deepcopy(model.state_dict()), float("inf"), 0, 0
        for epoch in range(1, config.max_epochs + 1):
            epochs = epoch
            model.train()
            for idx in torch.randperm(len(y), generator=gen).split(config.batch_size):
                opt.zero_grad()
                nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
                opt.step()
            if val is None:
                continue
            model.eval()
            with torch.no_grad():
                val_loss = nn.functional.cross_entropy(model(x_all[val]), y_all[val]).item()
            if val_loss < best_loss - 1e-6:
                best, best_loss, stale = copy.deepcopy(model.state_dict()), val_loss, 0
            else:
                stale += 1
                if stale >= config.patience:
                    break
        if val is not None:
            model.load_state_dict(best)
    model.eval()
    return _MlpFit(scaler=scaler, model=model, epochs=epochs)


def _proba_mlp(fitted: _MlpFit, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(fitted.model(fitted.scaler(x)), dim=1).numpy()


ATTACKERS.register("mlp")(Attacker(name="mlp", fit=_fit_mlp, predict_proba=_proba_mlp))


# --------------------------------------------------------------------------------------- knn


@dataclass(frozen=True, kw_only=True)
class _KnnFit:
    scaler: _Standardizer
    bank: torch.Tensor  # L2-normalised standardised training features [N, D]
    labels: torch.Tensor  # [N]
    num_classes: int
    config: KnnConfig


def _fit_knn(
    train_x: np.ndarray,
    train_y: np.ndarray,
    num_classes: int,
    seed: int,
    *,
    groups: np.ndarray | None = None,
    config: KnnConfig = KnnConfig(),
) -> _KnnFit:
    scaler = _standardizer(train_x)
    bank = nn.functional.normalize(scaler(train_x), dim=1)
    labels = _check_labels(train_y, num_classes, bank.shape[0])
    return _KnnFit(scaler=scaler, bank=bank, labels=labels, num_classes=num_classes, config=config)


def _proba_knn(fitted: _KnnFit, x: np.ndarray) -> np.ndarray:
    cfg = fitted.config
    queries = nn.functional.normalize(fitted.scaler(x), dim=1)
    n_bank = fitted.bank.shape[0]
    k = min(cfg.k, n_bank)
    rows = max(1, cfg.max_block // max(n_bank, 1))
    out = torch.zeros(queries.shape[0], fitted.num_classes)
    with torch.no_grad():
        for start in range(0, queries.shape[0], rows):
            q = queries[start : start + rows]
            sim, idx = (q @ fitted.bank.T).topk(k, dim=1)
            w = torch.exp(sim / cfg.temperature)
            votes = torch.zeros(q.shape[0], fitted.num_classes)
            votes.scatter_add_(1, fitted.labels[idx], w)
            out[start : start + rows] = votes / votes.sum(dim=1, keepdim=True)
    return out.numpy()


ATTACKERS.register("knn")(Attacker(name="knn", fit=_fit_knn, predict_proba=_proba_knn))


# ------------------------------------------------------------------------------------ attack


def mean_by_group(proba: np.ndarray, group_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average rows of ``proba`` [N, K] per group (e.g. per video).

    Returns
    -------
    (groups, mean_proba)
        The sorted unique group ids [G] and the mean row of each [G, K].
    """
    p = np.asarray(proba, dtype=np.float64)
    g = np.asarray(group_ids).ravel()
    if g.size != p.shape[0]:
        raise ValueError(f"{p.shape[0]} rows but {g.size} group ids")
    uniq, inverse = np.unique(g, return_inverse=True)
    sums = np.zeros((uniq.size, p.shape[1]))
    np.add.at(sums, inverse, p)
    counts = np.bincount(inverse, minlength=uniq.size)[:, None]
    return uniq, sums / counts


def _labels_by_group(y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    uniq, inverse = np.unique(groups, return_inverse=True)
    first = np.full(uniq.size, -1, dtype=np.int64)
    first[inverse[::-1]] = y[::-1]  # the first label seen per group
    if np.any(first[inverse] != y):
        raise ValueError("a group (video) carries more than one label for this attribute")
    return first


@dataclass(frozen=True, kw_only=True)
class Leakage:
    """What the attackers scored on the test split: the labels, each attacker's
    probabilities, and which test rows (or, grouped, which groups) the scored rows are."""

    labels: np.ndarray  # [N]
    proba: dict[str, np.ndarray]  # attacker -> [N, K]
    rows: np.ndarray  # [N] positions in the test input (or the group ids, sorted)


def attack(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    num_classes: int,
    attackers: Sequence[str] = ("linear", "mlp", "knn"),
    seed: int = 0,
    groups_train: np.ndarray | None = None,
    groups_test: np.ndarray | None = None,
) -> dict[str, Any]:
    """Fit each attacker on the training split and score it on the test split.

    Rows whose label is negative (unknown) are dropped. When ``groups_test`` is given, the
    attacker's probabilities are averaged per group (video) and each video is scored once;
    ``groups_train`` lets the MLP hold out whole training videos for early stopping.

    Returns
    -------
    dict
        ``{"chance": float, "chance_cmap": float, "num_train": int, "num_test": int,
        "attackers": {name: {"accuracy", "macro_f1", "cmap", "chance_cmap"}},
        "strongest": name, "scored": Leakage}``. ``chance`` is the majority-class rate of the
        (scored) test labels; ``strongest`` is the attacker with the highest cMAP above chance
        (first on ties); ``scored`` keeps what each attacker scored, for bootstrap intervals
        (not JSON: the report drops it).
    """
    train_x, test_x = np.asarray(train_x), np.asarray(test_x)
    train_y, test_y = np.asarray(train_y).ravel(), np.asarray(test_y).ravel()
    keep_tr, keep_te = train_y >= 0, test_y >= 0
    train_x, train_y = train_x[keep_tr], train_y[keep_tr]
    test_x, test_y = test_x[keep_te], test_y[keep_te]
    if groups_train is not None:
        groups_train = np.asarray(groups_train).ravel()[keep_tr]
    if groups_test is not None:
        groups_test = np.asarray(groups_test).ravel()[keep_te]
    if train_y.size == 0 or test_y.size == 0:
        raise ValueError("attack needs labelled rows in both the training and the test split")
    specs = [ATTACKERS.get(name) for name in attackers]

    y_scored = test_y if groups_test is None else _labels_by_group(test_y, groups_test)
    chance_map = metrics.chance_cmap(y_scored)
    results: dict[str, dict[str, float]] = {}
    probas: dict[str, np.ndarray] = {}
    for spec in specs:
        fitted = spec.fit(train_x, train_y, num_classes, seed, groups=groups_train)
        proba = spec.predict_proba(fitted, test_x)
        if groups_test is not None:
            _, proba = mean_by_group(proba, groups_test)
        pred = proba.argmax(axis=1)
        probas[spec.name] = proba
        results[spec.name] = {
            "accuracy": metrics.accuracy(y_scored, pred),
            "macro_f1": metrics.macro_f1(y_scored, pred),
            "cmap": metrics.cmap(y_scored, proba),
            "chance_cmap": chance_map,
        }
    # NaN cMAP (degenerate test labels) never wins.
    strongest = max(results, key=lambda n: np.nan_to_num(results[n]["cmap"], nan=-np.inf))
    return {
        "chance": metrics.chance_accuracy(y_scored),
        "chance_cmap": chance_map,
        "num_train": int(train_y.size),
        "num_test": int(y_scored.size),
        "attackers": results,
        "strongest": strongest,
        "scored": Leakage(
            labels=y_scored,
            proba=probas,
            rows=np.flatnonzero(keep_te) if groups_test is None else np.unique(groups_test),
        ),
    }
