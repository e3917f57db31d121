"""``aamflow extract``: decode videos once, encode clips, write the feature store.

The manifest's videos are split into parts. Each part is one task: loader workers decode
and preprocess its videos (``stream.py``) while the encoder runs batches that may span
several videos; results are written in video order and the part is committed atomically.
Committed parts are skipped on a re-run, so a crash resumes without duplicates.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from aamflow.pipeline.cluster import (
    ClusterConfig,
    SlurmConfig,
    auto_workers,
    check_cluster,
    run_tasks,
    select_slice,
)
from aamflow.pipeline.devices import resolve_device
from aamflow.pipeline.progress import progress_bar
from aamflow.schemas.atomic import atomic_write_json
from aamflow.schemas.errors import ConfigError, StoreError
from aamflow.schemas.layout import CROP_NAMES
from aamflow.schemas.manifest import Manifest, load_manifest
from aamflow.schemas.store import (
    PartPlan,
    check_writer,
    committed_parts,
    create_store,
    detect_backend,
    frame_labels_for,
    index_store,
    new_store_attrs,
    open_part_writer,
    plan_parts,
    record_from_entry,
    remove_store,
)

from .config import ExtractConfig
from .preprocess import TenCrop

log = logging.getLogger("aamflow.extract")

# --workers 0 (the default) runs fewer videos than this in this process with a loader
# process: on the 43-video tiny corpus that was level with a 2-worker LocalCluster, which
# pays a start and a torch import per worker (benchmarks/RESULTS.md, "Scale-out")
SERIAL_BELOW_VIDEOS = 64


@functools.lru_cache(maxsize=2)
def _encoder(name: str, options_json: str, device: str) -> Any:
    """Build the encoder once per process (a worker reuses it for all its parts)."""
    from .encoders import create_encoder

    options = json.loads(options_json)
    enc = create_encoder(name, **options)
    import torch

    enc.module.to(torch.device(device)).eval()
    return enc


def _encode_pixels(enc: Any, pixels: Any, gather: Any, device: str, precision: str) -> Any:
    """Encode the clips ``pixels[gather]``: uint8 frames ``[U, 3, S, S]`` and the frame
    rows of each clip ``[B, T]`` go to ``device``, where the clips are gathered, normalised
    and encoded. Returns float32 ``[B, dim]`` on ``device`` (nothing waits for the GPU)."""
    import torch

    from .preprocess import autocast, normalize

    with torch.inference_mode():
        frames = pixels.to(device, non_blocking=True)
        rows = gather.to(device, non_blocking=True)
        if hasattr(enc, "encode_frames"):  # an image model: each distinct frame runs once
            t = enc.transform
            return enc.encode_frames(normalize(frames, t.mean, t.std, dim=1), rows).float()
        x = enc.transform.normalize(frames[rows].permute(0, 2, 1, 3, 4))  # [B, 3, T, S, S]
        with autocast(device, precision):
            out = enc.encode(x)
        return out.float()


@functools.lru_cache(maxsize=2)
def _manifest_at(path: str, stamp: tuple[int, int]) -> Manifest:
    return load_manifest(path)


def _manifest(path: str | Path) -> Manifest:
    """The manifest, parsed once per process rather than once per part (a worker runs
    many parts); keyed on the file's mtime and size so an edited manifest is re-read."""
    try:
        st = os.stat(path)
    except OSError:
        return load_manifest(path)  # raises the one-line "manifest not found" error
    return _manifest_at(str(path), (st.st_mtime_ns, st.st_size))


class _Batcher:
    """Groups clips from consecutive videos into encoder batches of ``size`` clips.

    An item is a loader message's ``pixels`` (uint8 frames) and ``gather`` (each clip's
    rows of them); ``run(frames, gather)`` encodes one batch on ``device`` and returns its
    features there. The batches do not depend on the loader: they are consecutive ``size``
    clips of the items in order.

    On CUDA the frames are assembled in pinned memory, so their copy to the device is
    asynchronous, and features come back the same way: a flush hands out the features of
    the previous flush, so the CPU assembles the next batch while the GPU encodes.
    ``flush(wait=True)`` hands out everything.
    """

    def __init__(self, size: int, run: Callable[[Any, Any], Any], device: str = "cpu") -> None:
        self.size = size
        self.run = run
        self.device = device
        self.cuda = device.startswith("cuda")
        self.items: list[tuple[Any, Any, np.ndarray]] = []
        self.count = 0
        self.in_flight: tuple[list[tuple[Any, int]], Any, Any] | None = None

    def add(self, key: Any, pixels: Any, gather: Any) -> list[tuple[Any, np.ndarray]]:
        # the DataLoader hands numpy arrays over as tensors: one type from here on
        self.items.append((key, pixels, np.asarray(gather)))
        self.count += len(gather)
        return self.flush() if self.count >= self.size else []

    def flush(self, wait: bool = False) -> list[tuple[Any, np.ndarray]]:
        previous = self.in_flight
        self.in_flight = self._launch() if self.items else None
        out = self._collect(previous)
        if wait:
            out += self._collect(self.in_flight)
            self.in_flight = None
        return out

    def _launch(self) -> tuple[list[tuple[Any, int]], Any, Any]:
        import torch

        pixels = [p for _, p, _ in self.items]
        offsets = np.cumsum([0] + [len(p) for p in pixels[:-1]])
        gather = torch.from_numpy(
            np.concatenate([g + o for (_, _, g), o in zip(self.items, offsets, strict=True)])
        )
        if self.cuda:
            # a plain torch.cat would land in pageable memory, whose copies block
            shape = (sum(len(p) for p in pixels), *pixels[0].shape[1:])
            frames = torch.cat(pixels, out=torch.empty(shape, dtype=torch.uint8, pin_memory=True))
            gather = gather.pin_memory()
        else:
            frames = torch.cat(pixels)
        with torch.inference_mode():
            frames = frames.to(self.device, non_blocking=True)  # once for all batches
            n, size = len(gather), self.size
            feats = torch.cat([self.run(frames, gather[i : i + size]) for i in range(0, n, size)])
            event = None
            if self.cuda:
                host = torch.empty(feats.shape, dtype=feats.dtype, pin_memory=True)
                feats = host.copy_(feats, non_blocking=True)
                event = torch.cuda.Event()
                event.record()
        keys = [(key, len(g)) for key, _, g in self.items]
        self.items, self.count = [], 0
        return keys, feats, event

    @staticmethod
    def _collect(
        launched: tuple[list[tuple[Any, int]], Any, Any] | None,
    ) -> list[tuple[Any, np.ndarray]]:
        if launched is None:
            return []
        keys, feats, event = launched
        if event is not None:
            event.synchronize()
        feats = feats.numpy().copy()  # own memory: a pinned block is not held by the store
        out, k = [], 0
        for key, n in keys:
            out.append((key, feats[k : k + n]))
            k += n
        return out


def extract_part(
    plan: PartPlan,
    *,
    manifest_path: str,
    store: str,
    encoder: str,
    encoder_options: str,
    decoder: str,
    device: str,
    precision: str,
    batch_size: int,
    loader_workers: int,
    crops: int = 1,
    on_video: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Extract the videos of one part and commit it; returns its counts.

    ``crops`` 10 encodes every clip and static clip in ten views (``preprocess.TenCrop``).
    """
    from .stream import VideoJob, stream_videos

    manifest = _manifest(manifest_path)
    sampling = replace(manifest.sampling, crops=crops)
    enc = _encoder(encoder, encoder_options, device)
    crop = enc.transform.crop_frames if crops == 1 else TenCrop.of(enc.transform)
    entries = manifest.videos[plan.start : plan.stop]
    spaces = manifest.label_spaces
    jobs = [
        VideoJob(index=k, path=str(e.abspath(manifest)), task=e.task) for k, e in enumerate(entries)
    ]
    state: dict[int, dict[str, Any]] = {
        k: {"clips": [], "static": None, "done": False} for k in range(len(jobs))
    }
    next_write = 0
    failed = clips = 0
    start = time.perf_counter()
    batcher = _Batcher(
        batch_size, lambda px, g: _encode_pixels(enc, px, g, device, precision), device
    )

    def absorb(results: list[tuple[Any, np.ndarray]]) -> None:
        for (k, kind, meta), feats in results:
            if kind == "clips":
                state[k]["clips"].append((meta, feats))
            else:
                state[k]["static"] = (meta, feats)
            state[k]["pending"] -= 1

    with open_part_writer(store, plan, writer="extract") as writer:

        def write_ready() -> None:
            nonlocal next_write, failed, clips
            while (
                next_write < len(jobs)
                and state[next_write]["done"]
                and state[next_write].get("pending", 0) == 0
            ):
                k = next_write
                rec = _record(entries[k], plan.start + k, spaces, state[k], crops)
                writer.add(rec)
                failed += rec.status != "ok"
                clips += 0 if rec.clip_features is None else len(rec.clip_features)
                state[k] = {}
                next_write += 1
                if on_video:
                    on_video(0 if rec.clip_features is None else len(rec.clip_features))

        stream = stream_videos(
            jobs,
            sampling,
            crop,
            decoder=decoder,
            chunk=batch_size,
            workers=loader_workers,
        )

        def handle(msg: dict[str, Any]) -> None:
            k, kind = msg["index"], msg["kind"]
            st = state[k]
            st.setdefault("pending", 0)
            if kind == "info":
                st["info"] = msg
            elif kind in ("clips", "static"):
                st["pending"] += 1
                skip = ("pixels", "gather", "index", "kind")
                meta = {key: v for key, v in msg.items() if key not in skip}
                absorb(batcher.add((k, kind, meta), msg["pixels"], msg["gather"]))
            elif kind == "reset":
                absorb(batcher.flush(wait=True))
                st.update(clips=[], static=None, info=None, pending=0)
            elif kind == "error":
                st.update(done=True, error=msg["error"])
            elif kind == "done":
                st.update(done=True, decoder=msg["decoder"])
            write_ready()

        # messages are consumed in video order, whatever the loader interleaving, so
        # encoder batches (and therefore output bytes) do not depend on loader workers
        inbox: dict[int, list[dict[str, Any]]] = {}
        cursor = 0
        for msg in stream:
            inbox.setdefault(msg["index"], []).append(msg)
            while cursor in inbox and inbox[cursor]:
                m = inbox[cursor].pop(0)
                handle(m)
                if m["kind"] in ("done", "error"):
                    del inbox[cursor]
                    cursor += 1
        absorb(batcher.flush(wait=True))
        write_ready()
        if next_write != len(jobs):
            raise StoreError(f"{plan.name}: loader ended after {next_write} of {len(jobs)} videos")
        writer.commit(extra={"encoder_seconds": round(time.perf_counter() - start, 3)})
    return {"part": plan.name, "videos": len(jobs), "failed": failed, "clips": clips}


def _record(entry: Any, row: int, spaces: Any, st: dict[str, Any], crops: int = 1) -> Any:
    rec = record_from_entry(entry, row, spaces)
    info = st.get("info") or {}
    if info:
        rec.num_frames = int(info["num_frames"])
        rec.fps = float(info["fps"])
        rec.duration = rec.num_frames / rec.fps if rec.fps else math.nan
        rec.width, rec.height = int(info["width"]), int(info["height"])
    if st.get("error") is not None or not st.get("clips"):
        rec.status = "failed"
        rec.error = st.get("error") or "no clips decoded"
        rec.decoder = st.get("decoder", "")
        return rec
    metas = [m for m, _ in st["clips"]]
    rec.clip_features = _by_clip(np.concatenate([f for _, f in st["clips"]]), crops)
    rec.clip_frame_idx = np.concatenate([m["frame_idx"] for m in metas])
    rec.clip_frames = np.concatenate([m["frames"] for m in metas])
    rec.clip_time = np.concatenate([m["time"] for m in metas])
    rec.clip_padded = np.concatenate([m["padded"] for m in metas]).astype(np.int8)
    smeta, sfeat = st["static"]
    rec.static_features = _by_clip(sfeat, crops)
    rec.static_frame = np.asarray(smeta["frame"], dtype=np.int64)
    rec.decoder = st.get("decoder", "")
    rec.frame_labels = frame_labels_for(entry, rec.num_frames, rec.fps)
    return rec


def _by_clip(feats: np.ndarray, crops: int) -> np.ndarray:
    """float32 encoder rows ``[n * crops, D]`` as the store's ``[n, D]`` or ``[n, crops, D]``."""
    feats = feats.astype(np.float32)
    return feats if crops == 1 else feats.reshape(-1, crops, feats.shape[-1])


def _store_attrs(config: ExtractConfig, manifest: Manifest, plan: list[PartPlan]) -> dict[str, Any]:
    enc = _encoder(config.encoder, json.dumps(config.encoder_options(), sort_keys=True), "cpu")
    crops = config.crops_for(manifest)
    identity = enc.identity.to_dict()
    if identity.get("clip_len") and identity["clip_len"] != manifest.sampling.clip_len:
        raise ConfigError(
            f"{config.manifest}: sampling.clip_len {manifest.sampling.clip_len} does not match "
            f"encoder {config.encoder}'s clip_len {identity['clip_len']}"
        )
    # the encoder's preprocessing fixes the input side; a manifest may state it (checked)
    # or leave it out (the store records the encoder's)
    size = int(enc.transform.crop)
    asked = manifest.sampling.input_size
    if asked is not None and asked != size:
        raise ConfigError(
            f"{config.manifest}: sampling.input_size {asked} does not match encoder "
            f"{config.encoder}'s input size {size}; set it to {size} or leave it out "
            "(aamflow feeds each encoder the size it was built for)"
        )
    attrs = new_store_attrs(
        encoder=identity,
        sampling=replace(manifest.sampling, input_size=size, crops=crops),
        label_spaces=manifest.label_spaces,
        plan=plan,
        provenance={
            "manifest_digest": manifest.digest,
            "manifest_path": str(config.manifest),
            "manifest_name": manifest.name,
        },
    )
    if crops > 1:  # only then: a one-crop store's attributes stay as they always were
        geometry = TenCrop.of(enc.transform).to_dict()
        attrs["aamflow"]["crop_views"] = {"names": list(CROP_NAMES), **geometry}
    return attrs


def _check_duplicates(config: ExtractConfig, manifest: Manifest) -> None:
    """Warn about one video listed under several ids; refuse it across splits (a train/test
    leak) unless ``allow_duplicate_videos``."""
    from aamflow.schemas.manifest import duplicate_videos

    for dup in duplicate_videos(manifest):
        if len(dup.splits) > 1 and not config.allow_duplicate_videos:
            raise ConfigError(
                f"{config.manifest}: {dup.describe()} across splits {', '.join(dup.splits)}: "
                "a train/test leak; fix the manifest or pass --allow-duplicate-videos"
            )
        log.warning("%s: %s; each is extracted", config.manifest, dup.describe())


def run_extract(config: ExtractConfig) -> dict[str, Any]:
    """Extract features for every video of the manifest into ``config.out``.

    Returns a summary with ``exit_code``: non-zero only under ``--strict`` with failures,
    or when every video failed.
    """
    out = Path(config.out)
    resolve_device(config.device)  # a missing device is refused before anything is written
    if config.commit_only:
        index = index_store(out, writer="extract")
        if not config.quiet:
            print(
                f"indexed {out}: {index['totals']['videos']} videos, {index['totals']['clips']} clips"
            )
        return {"out": str(out), "indexed": True, "exit_code": 0}
    manifest = _manifest(config.manifest)
    _check_duplicates(config, manifest)
    slurm = SlurmConfig.from_yaml(config.slurm_config) if config.slurm_config else None
    # a cluster that cannot run is refused before the store is touched or a job submitted
    check_cluster(ClusterConfig(scheduler=config.scheduler, slurm=slurm))
    plan = plan_parts(len(manifest.videos), config.part_size)
    attrs = _store_attrs(config, manifest, plan)
    if out.exists():
        # an anonymized store is never extracted into, not even to replace it
        check_writer(out, detect_backend(out).read_attrs(out)["aamflow"], "extract")
    if out.exists() and config.overwrite and config.part_slice is None:
        remove_store(out)
    if out.exists():
        old = detect_backend(out).read_attrs(out)["aamflow"]["provenance"]
        if old.get("manifest_digest") != manifest.digest:
            raise StoreError(
                f"{out}: exists and was extracted from another manifest; use --overwrite or another --out"
            )
    create_store(out, attrs, fmt=config.fmt, exist_ok=True)
    done = committed_parts(out)
    mine = select_slice(plan, config.part_slice)
    todo = [p for p in mine if config.overwrite or p.name not in done]
    n_videos = sum(p.stop - p.start for p in todo)
    cluster = ClusterConfig(
        workers=config.workers
        or auto_workers(len(todo), n_videos, SERIAL_BELOW_VIDEOS, config.device),
        scheduler=config.scheduler,
        part_slice=config.part_slice,
        slurm=slurm,
        quiet=config.quiet,
    )
    common = dict(
        manifest_path=str(config.manifest),
        store=str(out),
        encoder=config.encoder,
        encoder_options=json.dumps(config.encoder_options(), sort_keys=True),
        decoder=config.decoder,
        device=config.device,
        precision=config.precision,
        batch_size=config.batch_size,
        crops=config.crops_for(manifest),
    )
    t0 = time.perf_counter()
    n_clips = 0

    def show_rate(bar: Any) -> None:
        bar.set_postfix(clips_s=f"{n_clips / max(time.perf_counter() - t0, 1e-9):.1f}")

    if cluster.in_process:
        with progress_bar(total=n_videos, desc="extract", unit="video", quiet=config.quiet) as bar:

            def on_video(k: int) -> None:
                nonlocal n_clips
                n_clips += k
                bar.update(1)
                show_rate(bar)

            task = functools.partial(
                extract_part, loader_workers=config.loader_workers, on_video=on_video, **common
            )
            results = run_tasks(task, todo, cluster)
    else:
        # the submitting side counts parts as they commit; worker processes decode inline,
        # each being already one of N parallel processes
        with progress_bar(total=len(todo), desc="extract", unit="part", quiet=config.quiet) as bar:

            def on_part(res: dict[str, Any]) -> None:
                nonlocal n_clips
                n_clips += res["clips"]
                bar.update(1)
                show_rate(bar)

            task = functools.partial(extract_part, loader_workers=0, **common)
            results = run_tasks(task, todo, cluster, on_done=on_part)
    seconds = time.perf_counter() - t0
    committed = committed_parts(out)
    summary: dict[str, Any] = {
        "out": str(out),
        "parts_written": len(results),
        "parts_skipped": len(mine) - len(todo),
        "videos": sum(r["videos"] for r in results),
        "failed": sum(r["failed"] for r in results),
        "clips": sum(r["clips"] for r in results),
        "seconds": round(seconds, 3),
        "indexed": False,
    }
    if committed >= {p.name for p in plan}:
        index = index_store(out)
        summary["indexed"] = True
        summary["failed_total"] = index["failed_videos"]
        summary["videos_total"] = index["totals"]["videos"]
    atomic_write_json(out.parent / f"{out.name}.extract.json", config.to_dict())
    failed = summary.get("failed_total", summary["failed"])
    total = summary.get("videos_total", summary["videos"])
    summary["exit_code"] = 1 if (failed and config.strict) or (total and failed == total) else 0
    if summary["exit_code"]:
        # printed even with --quiet (the CLI shows it on stderr): exit 1 alone says nothing
        what = "every video failed" if failed == total else "--strict and videos failed"
        summary["error"] = (
            f"{what} ({failed} of {total}); they are recorded in the store: aamflow inspect {out}"
        )
    if not config.quiet:
        rate = summary["clips"] / seconds if seconds else 0.0
        state = (
            "indexed"
            if summary["indexed"]
            else "parts committed; run the remaining --part slices, then --commit-only"
        )
        print(
            f"extracted {summary['videos']} videos ({summary['clips']} clips, {rate:.1f} clips/s) "
            f"into {out}; {summary['parts_skipped']} part(s) already done; {failed} failed; {state}"
        )
        if failed:
            print(f"failed videos are recorded in the store: aamflow inspect {out}")
    return summary
