"""Task heads: co-trained with the AAM in train-adapter and re-fitted from scratch by eval.

Each registered head is a ``HeadSpec`` bundling four plain functions (their signatures
differ per task and are documented on each function):

- ``build(dim, num_classes | ..., **hparams) -> nn.Module``
- ``loss(outputs..., targets...) -> Tensor`` (0-d, no host synchronisation)
- ``predict(module, ...)``: video-level scores, detections or clip scores
- ``fit(features..., epochs, lr, seed) -> nn.Module``: seeded training on fixed features

``ar_linear`` lives here; ``tad`` is in ``tad_head.py`` and ``ad_mil`` in ``ad_head.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aamflow.schemas._registry import Registry
from aamflow.stages.models import ad_head, tad_head
from aamflow.stages.models._training import batches, input_stats, seeded


@dataclass(frozen=True, kw_only=True)
class HeadSpec:
    """The four functions that make up one task head."""

    name: str
    build: Callable[..., nn.Module]
    loss: Callable[..., Tensor]
    predict: Callable[..., object]
    fit: Callable[..., nn.Module]


HEADS: Registry[HeadSpec] = Registry("head")


# --- action recognition -----------------------------------------------------------------


def build_ar_linear(dim: int, num_classes: int) -> nn.Linear:
    """A linear action classifier ``Linear(dim, num_classes)``."""
    return nn.Linear(dim, num_classes)


def ar_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy of clip logits ``[N, C]`` against clip labels ``[N]``."""
    return F.cross_entropy(logits.float(), labels)


def fit_logistic(
    x: Tensor, y: Tensor, num_classes: int, *, max_iter: int, weight_decay: float
) -> nn.Linear:
    """Multinomial logistic regression by full-batch L-BFGS from zero weights (a convex
    problem: the same start gives the same answer), L2 on the weights; ``x`` standardised by
    the caller. The eval's linear attacker and train-adapter's rank guard share it."""
    model = nn.Linear(x.shape[1], num_classes)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    opt = torch.optim.LBFGS(
        model.parameters(),
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y) + 0.5 * weight_decay * model.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    model.eval()
    return model


def fit_ar_probe(
    train_x: Tensor,
    train_y: Tensor,
    num_classes: int,
    epochs: int = 100,
    lr: float = 1e-2,
    seed: int = 0,
    *,
    batch_size: int = 256,
    weight_decay: float = 1e-4,
) -> nn.Linear:
    """Train a linear probe on fixed clip features.

    Parameters
    ----------
    train_x, train_y
        ``[N, D]`` features and ``[N]`` integer labels (one device; training runs there).
    num_classes
        Number of classes C.
    epochs, lr, seed
        AdamW schedule; the same seed gives the same probe on the same device.
    batch_size, weight_decay
        Mini-batch size and AdamW decay.

    Returns
    -------
    nn.Linear
        In eval mode. It is trained on standardised features and the standardisation is
        folded into its weights, so it applies to raw features directly.
    """
    device = train_x.device
    mean, std = input_stats(train_x)
    x = (train_x.float() - mean) / std
    y = train_y.long()
    gen = torch.Generator().manual_seed(seed)
    with seeded(seed, device):
        probe = build_ar_linear(x.shape[1], num_classes).to(device)
        opt = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=weight_decay)
        for _ in range(epochs):
            for idx in batches(len(x), batch_size, gen, device):
                loss = ar_loss(probe(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    with torch.no_grad():
        probe.weight.div_(std)
        probe.bias.sub_(probe.weight @ mean)
    return probe.eval()


def predict_video(
    module: nn.Module, clip_feats: Tensor, clip_video: Tensor, num_videos: int | None = None
) -> Tensor:
    """Video-level class scores: the mean of each video's clip probabilities.

    Parameters
    ----------
    module
        A clip classifier ``[N, D] -> [N, C]`` logits.
    clip_feats
        ``[N, D]`` clip features.
    clip_video
        ``[N]`` integer video codes in ``[0, V)``.
    num_videos
        V; defaults to ``clip_video.max() + 1``.

    Returns
    -------
    Tensor
        ``[V, C]`` mean clip probabilities (argmax = predicted class); a video without
        clips gets a row of NaN.
    """
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            probs = torch.softmax(module(clip_feats.float()).float(), dim=-1)
    finally:
        module.train(was_training)
    v = int(clip_video.max()) + 1 if num_videos is None else num_videos
    idx = clip_video.long().to(probs.device)
    sums = torch.zeros(v, probs.shape[1], device=probs.device).index_add_(0, idx, probs)
    counts = torch.zeros(v, device=probs.device).index_add_(0, idx, torch.ones_like(idx).float())
    return sums / counts[:, None]


# --- registry ---------------------------------------------------------------------------

HEADS.register("ar_linear")(
    HeadSpec(
        name="ar_linear",
        build=build_ar_linear,
        loss=ar_loss,
        predict=predict_video,
        fit=fit_ar_probe,
    )
)
HEADS.register("tad")(
    HeadSpec(
        name="tad",
        build=tad_head.build_tad_head,
        loss=tad_head.tad_loss,
        predict=tad_head.decode_tad,
        fit=tad_head.fit_tad_head,
    )
)
HEADS.register("ad_mil")(
    HeadSpec(
        name="ad_mil",
        build=ad_head.build_ad_head,
        loss=ad_head.mil_ranking_loss,
        predict=ad_head.score_clips,
        fit=ad_head.fit_ad_head,
    )
)
