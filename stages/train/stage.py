"""``aamflow train-adapter``: train the AAM and the co-trained task heads on cached latents.

Objective per step (``stages.models.losses``)::

    L = w_lc * L_LC + w_t * L_T - w_b * L_B

- **L_B** (privacy, maximised), on the AAM outputs of two distinct static clips of each of
  the step's videos; no private labels are used. ``privacy_loss="ntxent"`` (the paper's):
  NT-Xent (cosine, temperature 0.1), the step's other videos as negatives, capped at
  ln(2B - 1) (``lb_cap``). ``"xcov"``: minus the two clips' cross-covariance relative to
  the latent variance, i.e. the share of a video's static output that both clips have in
  common (0 when nothing video-specific is left).
- **L_LC** (latent consistency): MSE between AAM(z) and z over every latent the AAM sees in
  the step: both static clips and one random clip of each L_B video, and the task clips
  below (padded TAD timesteps excluded). Static clips are included on purpose: without
  them the AAM could move static inputs arbitrarily far to win L_B.
- **Eraser** (``stages.models.eraser``), fitted before the first epoch with no private
  label. ``eraser="video"`` (the default), removed *before* the AAM (and again after it,
  ``pin_output``, so no output leaves the kept subspace) in two stages: the
  principal axes of the training videos' static clips, then, on what is left, the
  directions in which videos differ more than a video's clips vary and the seen classes
  differ; both ranks are chosen by cross-fitting over the training videos
  (``stages.train.rank``)
  unless ``erase_rank`` is given (the second stage alone), and recorded with their curve
  in ``eraser.json``. ``eraser="static"`` (recipe
  ``static-eraser``): the top ``erase_rank`` principal axes of the L_B videos' per-video
  mean static latents, projected out *after* the AAM. Either way every loss sees erased
  outputs.
- **L_T** (utility): the sum over the seen tasks of the AR cross-entropy on one random
  anonymized clip per AR video, the TAD loss over a window of ``tad_window`` anonymized
  timesteps per TAD video, and the MIL ranking loss over 32 RTFM segments per AD video.

A step takes ``batch_size`` training videos for L_B (a per-epoch permutation) and, per
task, ``ceil(n_task / steps)`` of that task's videos, so every task video enters its loss
at least once per epoch and shapes stay fixed (L_B drops the last partial batch, as SimCLR
does). All sampling happens on the device; the
only host synchronisation is once per epoch, when the accumulated losses are logged.

Outputs in ``<out>`` (default ``<store>.adapter``, where ``anonymize --store`` looks):
the contract checkpoint (``model.safetensors``, ``adapter.json``, ``heads.safetensors``
with keys ``<task>.<param>``), ``heads.json`` (how to rebuild each head), ``config.json``
(the resolved config; ``TrainConfig.from_dict`` reloads it), ``train_log.jsonl`` (one row
per epoch: losses, val metrics, throughput), ``curves.png`` and ``train_state/``.

Phases of ``run_train``: (1) check the config against the store, writing nothing on a bad
one; (2) build the seeded AAM, heads and optimizer, restoring ``train_state`` on resume;
(3) place the latents (resident or streamed); (4) train epochs, logging, validating and
saving the state after each; (5) publish the adapter checkpoint, curves and summary.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from aamflow.pipeline.devices import resolve_device
from aamflow.pipeline.progress import progress_bar
from aamflow.schemas.atomic import atomic_write_json
from aamflow.schemas.checkpoint import HEADS as HEADS_FILE
from aamflow.schemas.checkpoint import (
    METADATA,
    WEIGHTS,
    AdapterMetadata,
    default_adapter_dir,
    save_checkpoint,
)
from aamflow.schemas.errors import CheckpointError, ConfigError, StoreError, TrainingDiverged
from aamflow.schemas.store import open_store
from aamflow.stages.models._training import set_input_stats
from aamflow.stages.models.aam import apply_aam, build_aam
from aamflow.stages.models.ad_head import mil_ranking_loss
from aamflow.stages.models.eraser import (
    EraserDirections,
    consistency_target,
    fit_static_eraser,
    video_means,
)
from aamflow.stages.models.heads import HEADS, ar_loss
from aamflow.stages.models.losses import (
    LossWeights,
    nt_xent,
    paired_cross_covariance,
    total_objective,
)
from aamflow.stages.models.tad_head import tad_loss, tad_targets

from .config import TASK_HEADS, TrainConfig
from .curves import plot_curves, read_log
from .data import (
    TASKS,
    StepBatch,
    TrainData,
    VideoRoles,
    build_train_data,
    epoch_orders,
    labelled_tasks,
    latent_bytes,
    plan_chunks,
    plan_steps,
    prefetched,
    read_latents,
    sample_step,
    time_grid,
    video_roles,
)
from .rank import fit_directions, fit_video_eraser
from .state import has_state, load_state, save_state
from .validate import AAM_BATCH, load_val, validate

log = logging.getLogger("aamflow.train")

CONFIG_FILE = "config.json"
ERASER_FILE = "eraser.json"  # the video eraser's rank, the rule that chose it and its curve
LOG_FILE = "train_log.jsonl"
CURVES_FILE = "curves.png"
HEADS_INFO_FILE = "heads.json"
LOSS_NAMES = ("loss", "l_lc", "l_t", "l_b", "l_ar", "l_tad", "l_ad")
SMALL_STORE = 20_000  # training videos up to which validation runs every epoch
STATS_BYTES = 256 * 10**6  # raw clips read to fit a head's input standardisation
# fields a resumed run may change; anything else would make it a different run
RESUMABLE = {
    "epochs",
    "resume",
    "quiet",
    "device",
    "precision",
    "memory_budget",
    "val_every",
    "val_max_videos",
    "out",
}


# --- phase 1: check ---------------------------------------------------------------------


def _device(name: str) -> torch.device:
    return resolve_device(name)


def resolve_tasks(
    requested: tuple[str, ...] | None, roles: VideoRoles, store: Path
) -> tuple[str, ...]:
    """The seen tasks: the requested ones (each must have training labels) or, by default,
    every task the store's train split has labels for."""
    why = labelled_tasks(roles)
    if requested is None:
        return tuple(t for t in TASKS if not why[t])
    for t in requested:
        if why[t]:
            raise ConfigError(
                f"--tasks {t}: {store} has no training labels for it ({why[t]}); "
                f"tasks with labels: {', '.join(x for x in TASKS if not why[x]) or 'none'}"
            )
    return tuple(t for t in TASKS if t in requested)


def _check_resume(out: Path, config: TrainConfig) -> None:
    """Refuse to resume a run with different settings, or to overwrite one silently."""
    if not has_state(out):
        return
    if not config.resume:
        raise ConfigError(
            f"{out} already holds a training run; pass --resume to continue it, "
            "or choose another --out"
        )
    saved_file = out / CONFIG_FILE
    if not saved_file.is_file():
        return
    saved = json.loads(saved_file.read_text())
    now = config.to_dict()
    changed = sorted(k for k in now if k not in RESUMABLE and saved.get(k) != now[k])
    if "store" in changed and Path(saved["store"]).resolve() == Path(now["store"]).resolve():
        changed.remove("store")
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in changed)
        raise ConfigError(f"--resume: {out} was trained with other settings ({detail})")


# --- phase 2: model ---------------------------------------------------------------------


@dataclass
class Model:
    """The trained modules and their optimizer (mutable training state, not a config)."""

    aam: nn.Module
    heads: dict[str, nn.Module]
    optimizer: torch.optim.Optimizer
    scaler: Any
    num_classes: int
    lc_scale: float = 1.0  # 1 / mean per-dim latent variance when L_LC is relative

    def modules(self) -> list[nn.Module]:
        return [self.aam, *self.heads.values()]

    def train(self, mode: bool = True) -> None:
        for m in self.modules():
            m.train(mode)


def build_heads(tasks: tuple[str, ...], dim: int, num_classes: int) -> dict[str, nn.Module]:
    """One fresh head per seen task, from the head registry."""
    heads = {}
    for t in tasks:
        spec = HEADS.get(TASK_HEADS[t])
        heads[t] = spec.build(dim) if t == "ad" else spec.build(dim, num_classes)
    return heads


def eraser_hparams(config: TrainConfig, rank: int) -> dict[str, Any]:
    """``build_aam``'s eraser keywords for a run whose eraser has ``rank`` directions."""
    if not rank:
        return {}
    pin = {"pin_output": True} if config.eraser == "video" else {}  # outputs stay erased
    return {"erase_rank": rank, "eraser": config.eraser, **pin}


def build_model(
    config: TrainConfig, dim: int, num_classes: int, device: torch.device, rank: int = 0
) -> Model:
    """The AAM (identity at start; with an unfitted eraser of ``rank`` directions), the
    heads and AdamW; call under a seeded RNG."""
    hparams = {**config.hparams, **eraser_hparams(config, rank)}
    aam = build_aam(config.arch, dim, **hparams).to(device)
    heads = {t: h.to(device) for t, h in build_heads(config.tasks or (), dim, num_classes).items()}
    groups = [{"params": list(aam.parameters()), "lr": config.lr}]
    head_params = [p for h in heads.values() for p in h.parameters()]
    if head_params:
        groups.append({"params": head_params, "lr": config.head_lr})
    # fused AdamW consumes the fp16 grad scaler's inf check on the device: no sync per step
    fused = device.type == "cuda"
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay, fused=fused)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype(config, device) is torch.float16)
    return Model(aam=aam, heads=heads, optimizer=optimizer, scaler=scaler, num_classes=num_classes)


def prepare_eraser(
    config: TrainConfig, store: Any, train: VideoRoles, out: Path
) -> tuple[int, EraserDirections | None, dict[str, Any]]:
    """The eraser's rank, its fitted directions (a video eraser on a fresh run) and what
    ``adapter.json`` records of it. A resumed run reads the rank from ``eraser.json``; its
    buffers come back with the training state."""
    if config.eraser == "none":
        return 0, None, {"kind": "none"}
    if config.eraser == "static":
        return int(config.erase_rank or 0), None, {"kind": "static", "rank": config.erase_rank}
    saved = out / ERASER_FILE
    if config.resume and has_state(out):
        if not saved.is_file():
            raise CheckpointError(f"{out}: the training state has no {ERASER_FILE}; cannot resume")
        info = json.loads(saved.read_text())
        return int(info["rank"]), None, info
    tasks = config.tasks or ()
    if config.erase_rank is None:
        directions, choice = fit_video_eraser(store, train, tasks)
        info = {"kind": "video", **choice.to_dict()}
        if choice.rank == 0 and config.w_b == 0:
            # measured on opennsfw: nothing removed, and the AAM still moves the features
            info["warning"] = (
                "the rank rule chose 0: no eraser rank lowered held-out re-identification "
                "without costing the seen task more than a point, so this adapter removes "
                "no private information (see eraser.json's curve and benchmarks/RESULTS.md)"
            )
            log.warning("video eraser: %s", info["warning"])
    else:
        directions = fit_directions(store, train, tasks)
        info = {"kind": "video", "rank": config.erase_rank, "rule": "--erase-rank"}
    return int(info["rank"]), directions, info


def fit_eraser(aam: nn.Module, store: Any, roles: VideoRoles) -> None:
    """Fit the AAM's static eraser on the L_B videos' static latents (no labels)."""
    rows = roles.rows[roles.lb]
    means = video_means(store.static_features(), store.read("static_video"), rows)
    aam.eraser.set(*fit_static_eraser(means, aam.eraser.basis.shape[1]))


def latent_scale(store: Any, max_rows: int = 65536) -> float:
    """1 / mean per-dimension variance of the store's clip and static latents (an evenly
    spaced sample of each)."""
    parts = []
    for x in (store.clip_features(), store.static_features()):
        step = max(1, x.shape[0] // max_rows)
        parts.append(np.asarray(x[::step].compute(), dtype=np.float64))
    z = torch.from_numpy(np.concatenate(parts))
    var = float(z.var(0).mean()) if len(z) > 1 else 1.0
    return 1.0 / var if var > 0 else 1.0


def amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a run: None (fp32) unless ``--precision`` asks for AMP on CUDA."""
    if device.type != "cuda" or config.precision == "fp32":
        return None
    return torch.bfloat16 if config.precision == "bf16" else torch.float16


# --- the step and the epoch -------------------------------------------------------------


def train_step(
    model: Model, batch: StepBatch, config: TrainConfig, amp: torch.dtype | None
) -> Tensor:
    """One optimisation step; returns the detached losses ``LOSS_NAMES`` as one tensor."""
    device = batch.x.device
    zero = torch.zeros((), device=device)
    with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
        y = model.aam(batch.x)
        target = consistency_target(model.aam, batch.x)  # the erased input for a video eraser
        split = dict(zip(batch.sizes, y.split(list(batch.sizes.values())), strict=True))
        a, b = split["static_a"], split["static_b"]
        if config.privacy_loss == "xcov":
            l_b = -paired_cross_covariance(a, b) * model.lc_scale
        else:
            l_b = nt_xent(a, b, config.temperature)
        sq = (y.float() - target.float()).pow(2).mean(1)
        l_lc = (sq * batch.lc_weight).sum() / batch.lc_weight.sum() * model.lc_scale
        task = {"ar": zero, "tad": zero, "ad": zero}
        if "ar" in split:
            task["ar"] = ar_loss(model.heads["ar"](split["ar"]), batch.ar_label)
        if "tad" in split:
            mask = batch.tad_mask
            x = split["tad"].view(*mask.shape, -1)
            targets = tad_targets(batch.tad_gt, mask.shape[1], model.num_classes)
            task["tad"] = tad_loss(*model.heads["tad"](x, mask), targets, mask)
        if "ad" in split:
            bags = split["ad"].view(batch.ad_label.shape[0], -1, y.shape[1])
            task["ad"] = mil_ranking_loss(model.heads["ad"](bags), batch.ad_label)
        l_t = task["ar"] + task["tad"] + task["ad"]
        l_b_obj = l_b
        if config.lb_cap and config.privacy_loss == "ntxent":
            l_b_obj = torch.clamp(l_b, max=math.log(2 * a.shape[0] - 1))
        total = total_objective(l_lc, l_t, l_b_obj, config.w_lc, config.w_t, config.w_b)
    model.optimizer.zero_grad(set_to_none=True)
    model.scaler.scale(total).backward()
    model.scaler.step(model.optimizer)
    model.scaler.update()
    return torch.stack([total, l_lc, l_t, l_b, task["ar"], task["tad"], task["ad"]]).detach()


def train_one_epoch(
    model: Model,
    chunks: Iterator[TrainData],
    config: TrainConfig,
    gen: torch.Generator,
    amp: torch.dtype | None,
) -> tuple[Tensor, int, int]:
    """Run every step of one epoch; returns (summed losses on the device, steps, videos)."""
    model.train()
    sums: Tensor | None = None
    steps = videos = 0
    tasks = tuple(model.heads)
    for data in chunks:
        plan = plan_steps(data, config.batch_size, tasks)
        orders = epoch_orders(data, plan, gen)
        for k in range(plan.steps):
            losses = train_step(model, sample_step(data, orders, k, gen), config, amp)
            sums = losses if sums is None else sums + losses
        steps += plan.steps
        videos += plan.steps * plan.batch
    assert sums is not None, "an epoch without steps"
    return sums, steps, videos


# --- phase 3: latents -------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Where the training latents live: all on the device, or streamed in chunks."""

    roles: VideoRoles  # every training video a loss reads
    resident: TrainData | None
    part_bytes: np.ndarray  # per store part, latent bytes of its training videos
    by_part: dict[int, np.ndarray]  # store part -> positions of its videos in ``roles``
    chunk_bytes: int
    needed_bytes: int


def _load_chunk(
    store: Any, roles: VideoRoles, tasks: tuple[str, ...], config: TrainConfig, pin: bool
) -> TrainData:
    lat = read_latents(store, roles.rows)
    where = {int(r): i for i, r in enumerate(roles.rows)}
    aligned = roles.select(np.asarray([where[int(r)] for r in lat.rows], dtype=np.int64))
    data = build_train_data(lat, aligned, tasks, tad_window=config.tad_window)
    return data.pin_memory() if pin else data


def place_latents(
    store: Any, roles: VideoRoles, config: TrainConfig, device: torch.device
) -> Placement:
    """Load all training latents onto the device when they fit in ``memory_budget``."""
    dim = store.feature_dim
    part_bytes = np.zeros(len(store.part_names), np.int64)
    np.add.at(part_bytes, roles.part, (roles.static_count + roles.clip_count) * dim * 4)
    needed = latent_bytes(roles, dim)
    resident = None
    if needed <= config.memory_budget:
        resident = _load_chunk(store, roles, config.tasks or (), config, False).to(device)
    order = np.argsort(roles.part, kind="stable")
    bounds = np.flatnonzero(np.diff(roles.part[order])) + 1
    by_part = {int(roles.part[g[0]]): g for g in np.split(order, bounds) if len(g)}
    return Placement(
        roles=roles,
        resident=resident,
        part_bytes=part_bytes,
        by_part=by_part,
        chunk_bytes=config.memory_budget // 2,  # one chunk trains while the next loads
        needed_bytes=needed,
    )


def epoch_chunks(
    store: Any, place: Placement, config: TrainConfig, epoch: int, device: torch.device
) -> Iterator[TrainData]:
    """The latents of one epoch: the resident data, or the parts in a seeded random order
    grouped into chunks, each read by a background thread while the previous one trains."""
    if place.resident is not None:
        yield place.resident
        return
    parts = np.asarray(sorted(place.by_part))
    order = np.random.default_rng([config.seed, epoch]).permutation(parts)
    part_videos = np.bincount(place.roles.part[place.roles.lb], minlength=len(place.part_bytes))
    min_videos = min(config.batch_size, int(place.roles.lb.sum()))
    chunks = plan_chunks(place.part_bytes, order, place.chunk_bytes, part_videos, min_videos)
    pin = device.type == "cuda"

    def load(chunk: list[int]) -> TrainData:
        pos = np.concatenate([place.by_part[p] for p in chunk])
        return _load_chunk(store, place.roles.select(pos), config.tasks or (), config, pin)

    for data in prefetched(load, chunks):
        yield data.to(device)


def fit_head_stats(
    model: Model, store: Any, roles: VideoRoles, tasks: tuple[str, ...], budget: int
) -> None:
    """Fit the TAD/AD heads' input standardisation to raw training clips of their task
    (all of them, or an even spread of videos up to a byte budget)."""
    dim = store.feature_dim
    for t in tasks:
        head = model.heads[t]
        if not hasattr(head, "in_mean"):
            continue
        pos = np.flatnonzero(roles.in_task(t))
        nbytes = np.cumsum(roles.clip_count[pos] * dim * 4)
        keep = max(1, int(np.searchsorted(nbytes, min(budget, STATS_BYTES), side="right")))
        pos = pos[np.linspace(0, len(pos) - 1, min(keep, len(pos))).round().astype(np.int64)]
        clips = read_latents(store, roles.rows[np.unique(pos)]).clips
        device = head.in_mean.device
        # the head reads the adapter's output: at the start, the erased latents
        set_input_stats(head, apply_aam(model.aam, torch.from_numpy(clips), AAM_BATCH).to(device))


# --- phase 5: outputs -------------------------------------------------------------------


def publish_checkpoint(
    out: Path, state: dict[str, Tensor], meta: AdapterMetadata, heads: dict[str, Tensor]
) -> None:
    """Write the contract checkpoint files into ``out`` next to the training artifacts.

    ``save_checkpoint`` writes a complete checkpoint into a staging folder; its files then
    replace those in ``out`` one by one, metadata last. The metadata carries the weights'
    digest, so a reader never accepts a half-replaced checkpoint.
    """
    staging = out.parent / f".{out.name}.publish-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    save_checkpoint(staging, state, meta, heads or None)
    for name in (HEADS_FILE, WEIGHTS, METADATA):
        if (staging / name).exists():
            os.replace(staging / name, out / name)
        elif name == HEADS_FILE:
            (out / name).unlink(missing_ok=True)
    shutil.rmtree(staging, ignore_errors=True)


def _heads_info(model: Model, stride: int, span: int) -> dict[str, Any]:
    info: dict[str, Any] = {}
    for t, head in model.heads.items():
        entry: dict[str, Any] = {"head": TASK_HEADS[t], "prefix": f"{t}."}
        if t in ("ar", "tad"):
            entry["num_classes"] = model.num_classes
        if hasattr(head, "hparams"):
            entry["hparams"] = head.hparams
        if t == "tad":
            entry.update({"stride": stride, "clip_span": span})
        info[t] = entry
    return info


def _final_metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Last epoch's losses plus the latest value of every val metric."""
    if not rows:
        return {}
    metrics = {k: rows[-1][k] for k in LOSS_NAMES if k in rows[-1]}
    for row in rows:
        metrics.update({k: v for k, v in row.items() if k.startswith("val_")})
    metrics["epoch"] = rows[-1]["epoch"]
    return metrics


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


# --- the stage --------------------------------------------------------------------------


def run_train(config: TrainConfig) -> dict[str, Any]:
    """Train an adapter on ``config.store`` and write it to ``config.out``.

    Returns
    -------
    dict
        ``out`` (checkpoint folder), ``tasks``, ``epochs``, ``metrics`` (final losses and
        val metrics), ``placement`` (``resident`` or ``streaming``), ``seconds`` and
        ``videos_per_s`` (training steps only).

    Raises
    ------
    ConfigError, StoreError, CheckpointError
        Bad options, a store without usable training data, a damaged training state.
    """
    # phase 1: check everything before writing anything
    device = _device(config.device)
    store = open_store(config.store)
    out = Path(config.out) if config.out is not None else default_adapter_dir(config.store)
    roles_all = video_roles(store, "train")
    tasks = resolve_tasks(config.tasks, roles_all, config.store)
    config = replace(config, out=out, tasks=tasks)
    if int(roles_all.lb.sum()) < 2:
        raise StoreError(
            f"{config.store}: train-adapter needs at least 2 training videos with 2 or more "
            f"static clips (static_per_video >= 2); found {int(roles_all.lb.sum())}"
        )
    dim = store.feature_dim
    build_aam(config.arch, dim, **config.hparams)  # refuses bad ones
    if config.erase_rank is not None and config.erase_rank >= dim:
        raise ConfigError(f"--erase-rank {config.erase_rank}: must be below the dim {dim}")
    _check_resume(out, config)
    amp = amp_dtype(config, device)
    if config.precision != "fp32" and amp is None:
        log.warning("--precision %s applies on CUDA only; %s runs fp32", config.precision, device)
    roles = roles_all.select(roles_all.used(tasks))

    # phase 2: eraser, model, optimizer, state
    rank, directions, eraser_info = prepare_eraser(config, store, roles_all, out)
    out.mkdir(parents=True, exist_ok=True)
    if directions is not None:
        atomic_write_json(out / ERASER_FILE, eraser_info, indent=2)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # leave the caller's RNG untouched
        torch.manual_seed(config.seed)
        gen = torch.Generator(device=device).manual_seed(config.seed)
        model = build_model(config, dim, len(store.label_spaces.actions), device, rank)
        start = 0
        if config.resume and has_state(out):
            start = load_state(out, **_state_parts(model), gen=gen, device=device)
            log.info("resuming %s after epoch %d", out, start)
        else:
            if directions is not None and rank:
                model.aam.eraser.set(*directions.eraser(rank))
            elif config.eraser == "static":
                fit_eraser(model.aam, store, roles)
            fit_head_stats(model, store, roles, tasks, config.memory_budget)
        if config.lc_relative:
            model.lc_scale = latent_scale(store)
        # written once the state is known to fit: a refused resume leaves the old config;
        # the store resolved, so a resume from another folder compares the same path
        saved = {**config.to_dict(), "store": str(Path(config.store).resolve())}
        atomic_write_json(out / CONFIG_FILE, saved, sort_keys=True)
        rows = [r for r in read_log(out / LOG_FILE) if r["epoch"] <= start]
        (out / LOG_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))

        # phase 3: latents
        place = place_latents(store, roles, config, device)
        val = load_val(store, video_roles(store, "val"), tasks, config.val_max_videos)
        small = len(roles) <= SMALL_STORE
        every = config.val_every or (1 if small else max(1, config.epochs // 20))
        log.info(
            "training %d videos (%s, %.1f MB of latents), tasks: %s",
            len(roles),
            "resident" if place.resident is not None else "streaming",
            place.needed_bytes / 1e6,
            ",".join(tasks) or "none",
        )

        # phase 4: epochs
        seconds, videos = 0.0, 0
        with progress_bar(
            total=config.epochs, desc="train-adapter", unit="epoch", quiet=config.quiet
        ) as bar:
            bar.update(start)
            for epoch in range(start + 1, config.epochs + 1):
                chunks = epoch_chunks(store, place, config, epoch, device)
                row = run_epoch(model, chunks, config, gen, amp, epoch)
                _check_diverged(out, epoch, row, model)  # before save: keeps the last good state
                if val is not None and (epoch % every == 0 or epoch == config.epochs):
                    metrics = validate(model.aam, model.heads, val, config.temperature)
                    row.update({k: _finite(v) for k, v in metrics.items()})
                with (out / LOG_FILE).open("a") as f:
                    f.write(json.dumps(row) + "\n")
                rows.append(row)
                save_state(out, epoch=epoch, **_state_parts(model), gen=gen, device=device)
                seconds += row["seconds"]
                videos += row["videos"]
                shown = {k: f"{row[k]:.4g}" for k in LOSS_NAMES[:4] if row.get(k) is not None}
                bar.set_postfix(shown, refresh=False)
                bar.update(1)

    # phase 5: outputs
    metrics = publish(out, config, store, model, rows, eraser_info)
    store.close()
    log.info("wrote %s", out)
    return {
        "out": str(out),
        "tasks": list(tasks),
        "epochs": int(metrics.get("epoch", start)),
        "metrics": metrics,
        "eraser": {k: v for k, v in eraser_info.items() if k != "curve"},
        "placement": "resident" if place.resident is not None else "streaming",
        "seconds": round(seconds, 3),
        "videos_per_s": round(videos / seconds, 1) if seconds else None,
    }


def run_epoch(
    model: Model,
    chunks: Iterator[TrainData],
    config: TrainConfig,
    gen: torch.Generator,
    amp: torch.dtype | None,
    epoch: int,
) -> dict[str, Any]:
    """Train one epoch and return its log row (mean losses, steps, throughput)."""
    t0 = time.perf_counter()
    sums, steps, videos = train_one_epoch(model, chunks, config, gen, amp)
    means = (sums / steps).tolist()  # the epoch's one host synchronisation
    seconds = time.perf_counter() - t0
    row: dict[str, Any] = {"epoch": epoch}
    bad = [n for n, v in zip(LOSS_NAMES, means, strict=True) if not math.isfinite(v)]
    if bad:
        row["nonfinite"] = bad
    for name, value in zip(LOSS_NAMES, means, strict=True):
        task = name.removeprefix("l_")
        if task in TASKS and task not in model.heads:
            continue  # an unseen task has no loss to log
        row[name] = _finite(value)
    row.update(
        {
            "steps": steps,
            "videos": videos,
            "videos_per_s": round(videos / seconds, 1),
            "seconds": seconds,
        }
    )
    return row


def nonfinite_weights(model: Model) -> list[str]:
    """Names of the AAM and head parameters holding a NaN or an infinity (one device
    synchronisation for all of them, not one per tensor)."""
    named = [
        (f"{prefix}{n}", t)
        for prefix, m in (("", model.aam), *((f"{k}.", h) for k, h in model.heads.items()))
        for n, t in m.state_dict().items()
        if t.is_floating_point()
    ]
    if not named:
        return []
    ok = torch.stack([torch.isfinite(t).all() for _, t in named])
    if bool(ok.all()):
        return []
    return [name for (name, _), good in zip(named, ok.tolist(), strict=True) if not good]


def _check_diverged(out: Path, epoch: int, row: dict[str, Any], model: Model) -> None:
    """Stop a run whose epoch ended with a non-finite loss or weight, before its state is
    saved, so ``train_state`` keeps the last good epoch and no adapter is published."""
    what = [f"loss {n}" for n in row.get("nonfinite", [])]
    if not what:
        weights = nonfinite_weights(model)
        what = [f"weight {n}" for n in weights[:3]] + (["..."] if len(weights) > 3 else [])
    if what:
        kept = (
            f"the state after epoch {epoch - 1} is kept in {out / 'train_state'}"
            if epoch > 1
            else "no epoch completed"
        )
        raise TrainingDiverged(
            f"train-adapter diverged in epoch {epoch}: non-finite {', '.join(what)}; stopped "
            f"without publishing an adapter ({kept}). Lower --lr, or check the store with "
            "aamflow inspect --deep"
        )


def publish(
    out: Path,
    config: TrainConfig,
    store: Any,
    model: Model,
    rows: list[dict[str, Any]],
    eraser: dict[str, Any],
) -> dict[str, Any]:
    """Write the adapter checkpoint, heads.json and the curves; return the final metrics."""
    metrics = _final_metrics(rows)
    meta = AdapterMetadata(
        arch=config.arch,
        hparams=model.aam.hparams,
        input_dim=store.feature_dim,
        encoder=store.encoder,
        train_store_uuid=store.uuid,
        loss_weights=LossWeights(lc=config.w_lc, t=config.w_t, b=config.w_b).to_dict(),
        privacy_loss=config.privacy_loss,
        tasks=list(model.heads),
        metrics=metrics,
        batch_dependent=bool(model.aam.batch_dependent),
        epochs=int(metrics.get("epoch", 0)),
        seed=config.seed,
        eraser=eraser,
        recipe=config.recipe,
    )
    heads = {f"{t}.{k}": v for t, h in model.heads.items() for k, v in h.state_dict().items()}
    info = _heads_info(model, *time_grid(store.sampling))
    (out / HEADS_INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True))
    publish_checkpoint(out, model.aam.state_dict(), meta, heads)
    if rows:
        plot_curves(rows, out / CURVES_FILE, title=f"{config.arch} on {Path(config.store).name}")
    return metrics


def _state_parts(model: Model) -> dict[str, Any]:
    return {
        "aam": model.aam,
        "heads": model.heads,
        "optimizer": model.optimizer,
        "scaler": model.scaler,
    }
