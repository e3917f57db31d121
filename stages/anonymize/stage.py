"""``aamflow anonymize``: stream every part of a store through the AAM into a new store.

Each part is one task: it copies the part's label tables, passes clip and static-clip
features through the adapter, and commits the output part atomically. The output store is
indexed once all parts are committed. The input is only ever opened for reading.
"""

from __future__ import annotations

import functools
import json
import logging
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
from aamflow.schemas.checkpoint import (
    AdapterMetadata,
    check_compatible,
    default_adapter_dir,
    load_checkpoint,
)
from aamflow.schemas.errors import CheckpointError, ConfigError, StoreError
from aamflow.schemas.layout import FEATURE_ARRAYS
from aamflow.schemas.manifest import LabelSpaces
from aamflow.schemas.store import (
    PartPlan,
    PartWriter,
    backend_for,
    check_writer,
    committed_parts,
    create_store,
    detect_backend,
    index_store,
    open_checked_part,
    open_store,
    private_columns,
    remove_store,
    store_plan,
    utcnow,
)

from .config import AnonymizeConfig

log = logging.getLogger("aamflow.anonymize")

# --workers 0 (the default) rewrites fewer videos than this in this process: on 800 videos
# (6,400 clips) that was 1.6x a LocalCluster of 1 or 2 workers, which pay a start, a torch
# import and an adapter load per worker (benchmarks/RESULTS.md, "Scale-out")
SERIAL_BELOW_VIDEOS = 1000

# provenance fields that name paths on the machine that made the source store: an
# anonymized store is what gets shared, so they are not carried over
PATH_PROVENANCE = ("manifest_path", "manifest_name", "source_store_path", "adapter_path")


def default_output(store: Path, fmt: str | None) -> Path:
    """``features.zarr`` -> ``features.anon.zarr`` (``.h5`` when converting to HDF5)."""
    suffix = {"zarr": ".zarr", "hdf5": ".h5"}.get(fmt or "", store.suffix or ".zarr")
    return store.with_name(f"{store.stem}.anon{suffix}")


@functools.lru_cache(maxsize=4)
def _checkpoint(adapter_dir: str) -> tuple[dict[str, Any], AdapterMetadata, dict[str, Any]]:
    """Read and verify a checkpoint once per process (the checks and the AAM share it)."""
    return load_checkpoint(adapter_dir)


@functools.lru_cache(maxsize=4)
def _load_adapter(adapter_dir: str, device: str) -> Any:
    """Build the AAM once per worker process."""
    import torch

    from aamflow.stages.models.aam import build_aam

    state, meta, _ = _checkpoint(adapter_dir)
    module = build_aam(meta.arch, meta.input_dim, **meta.hparams)
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise CheckpointError(
            f"{adapter_dir}: weights do not fit arch {meta.arch!r}: {first}"
        ) from None
    return module.to(torch.device(device)).eval()


def rewrite_part(
    plan: PartPlan,
    *,
    src: str,
    dst: str,
    transform: Any = None,
    rows_per_read: int = 16384,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Copy one part of ``src`` into ``dst`` table by table, passing feature arrays through
    ``transform`` (numpy -> numpy; None copies them), and commit it.

    Reads ``rows_per_read`` rows at a time, so memory does not grow with the part.
    """
    from concurrent.futures import ThreadPoolExecutor

    src_path, dst_path = Path(src), Path(dst)
    src_backend = detect_backend(src_path)
    src_meta = src_backend.read_attrs(src_path)["aamflow"]
    # the reader's checks (every array, shapes, counts, chunks): damage is never laundered
    part = open_checked_part(src_path, src_backend, src_meta, plan.name)
    dst_backend = detect_backend(dst_path)
    try:
        writer = PartWriter(dst_path, dst_backend, dst_backend.read_attrs(dst_path), plan)
    except BaseException:
        part.close()
        raise
    # a ten-crop feature row holds ten vectors: read a tenth as many rows, same memory
    step: dict[str, int] = {}

    def read(block: tuple[str, int]) -> np.ndarray:
        name, start = block
        return np.asarray(part[name][start : start + step[name]])

    # one reader and one writer thread (order-preserving) overlap I/O with the transform
    try:
        for name in writer.specs:
            shape = part[name].shape
            step[name] = max(1, rows_per_read // (shape[1] if len(shape) == 3 else 1))
        blocks = [
            (name, start)
            for name in writer.specs
            for start in range(0, part[name].shape[0], step[name])
        ]
        with ThreadPoolExecutor(1) as reader, ThreadPoolExecutor(1) as writes:
            ahead = reader.submit(read, blocks[0]) if blocks else None
            pending = []
            for k, (name, _) in enumerate(blocks):
                rows = ahead.result()
                ahead = reader.submit(read, blocks[k + 1]) if k + 1 < len(blocks) else None
                if transform is not None and name in FEATURE_ARRAYS:
                    rows = transform(rows)
                pending.append(writes.submit(writer.append_raw, name, rows))
                if len(pending) > 2:  # bound the rows waiting to be written
                    pending.pop(0).result()
            for fut in pending:
                fut.result()
        counts = dict(part.attrs["counts"])
        # digests of only the columns kept: a stripped label column's sha256 over a few
        # videos could be brute-forced back into its values
        sha = {k: v for k, v in part.attrs.get("sha256", {}).items() if k in writer.specs}
        meta = {"source_part_sha256": sha, **(extra or {})}
        writer.commit(extra=meta, counts=counts)
    except BaseException:
        writer.abort()
        raise
    finally:
        part.close()
    return {
        "part": plan.name,
        "videos": counts["videos"],
        "clips": counts["clips"],
        "static": counts["static"],
    }


def anonymize_part(
    plan: PartPlan,
    *,
    src: str,
    dst: str,
    adapter: str,
    device: str,
    batch_size: int,
    rows_per_read: int,
) -> dict[str, Any]:
    """Anonymize one part of ``src`` into the same part of ``dst`` and commit it."""
    import torch

    from aamflow.stages.models.aam import apply_aam

    module = _load_adapter(adapter, device)

    def transform(rows: np.ndarray) -> np.ndarray:
        if not np.isfinite(rows).all():
            raise StoreError(
                f"{src}: part {plan.name}: the input holds non-finite features; anonymize "
                f"refuses to rewrite them (aamflow inspect --deep {src})"
            )
        # every crop of a ten-crop store ([n, crop, D]) is a vector of its own for the AAM
        x = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))
        flat = x.reshape(-1, x.shape[-1])
        out = apply_aam(module, flat, batch_size).numpy().reshape(rows.shape)
        if not np.isfinite(out).all():
            raise CheckpointError(
                f"{adapter}: the adapter turned finite features of part {plan.name} into "
                "non-finite ones (a diverged adapter?); nothing of that part was committed"
            )
        return out

    return rewrite_part(plan, src=src, dst=dst, transform=transform, rows_per_read=rows_per_read)


def _output_attrs(
    src_meta: dict[str, Any], meta: AdapterMetadata, keep_private_labels: bool
) -> dict[str, Any]:
    """The output's root attributes: the source's, marked anonymized and owned by
    anonymize, without the source's paths and (by default) without its private labels."""
    import uuid

    out = json.loads(json.dumps(src_meta))  # deep copy of plain JSON
    out["index"] = None
    spaces = LabelSpaces.from_dict(out["label_spaces"])
    strip = private_columns(spaces, labels=not keep_private_labels)
    out["stripped"] = sorted(set(out.get("stripped") or ()) | set(strip))
    prov = out["provenance"]
    for key in PATH_PROVENANCE:
        prov.pop(key, None)
    pre = out["encoder"].get("preprocessing")
    source = pre.get("source") if isinstance(pre, dict) else None
    if isinstance(source, str) and (Path(source).is_absolute() or Path(source).exists()):
        pre["source"] = Path(source).name  # local weights: the folder name, not where it lives
    prov.update(
        {
            "store_uuid": str(uuid.uuid4()),
            "created_utc": utcnow(),
            "writer": "anonymize",
            "anonymized": True,
            "adapter_digest": meta.weights_digest,
            "adapter_arch": meta.arch,
            "source_store_uuid": src_meta["provenance"]["store_uuid"],
            "source_adapter_digest": src_meta["provenance"].get("adapter_digest"),
        }
    )
    return {"aamflow": out}


def _check_inputs(config: AnonymizeConfig) -> tuple[Any, Path, AdapterMetadata, Path]:
    resolve_device(config.device)
    store = open_store(config.store)
    adapter = config.adapter or default_adapter_dir(config.store)
    if not Path(adapter).exists():
        raise CheckpointError(
            f"{adapter}: no adapter checkpoint; run `aamflow train-adapter --store {config.store}` or pass --adapter"
        )
    _, meta, _ = _checkpoint(str(adapter))
    check_compatible(meta, store.encoder, store.feature_dim, str(adapter))
    prov = store.provenance
    if (
        prov.get("anonymized")
        and prov.get("adapter_digest") == meta.weights_digest
        and not config.allow_reanonymize
    ):
        raise ConfigError(
            f"{config.store}: already anonymized by this adapter ({meta.weights_digest[:19]}); "
            "pass --allow-reanonymize to apply it again"
        )
    module = _load_adapter(str(adapter), config.device)
    from aamflow.stages.models.aam import is_identity

    if is_identity(module) and not config.allow_identity:
        raise CheckpointError(
            f"{adapter}: adapter is still the identity (untrained); it would publish raw features "
            "as anonymized. Train it, or pass --allow-identity"
        )
    out = config.out or default_output(config.store, config.fmt)
    src_res, out_res = Path(config.store).resolve(), Path(out).resolve()
    if out_res == src_res or src_res in out_res.parents or out_res in src_res.parents:
        raise ConfigError(
            f"--out {out} overlaps the input store {config.store}; anonymize never writes into its input"
        )
    return store, Path(adapter), meta, Path(out)


def run_anonymize(config: AnonymizeConfig) -> dict[str, Any]:
    """Anonymize ``config.store`` into a new store; returns a summary dict.

    Raises
    ------
    StoreError, CheckpointError, ConfigError
        Mismatched adapter, untrained adapter, already-anonymized input, bad output path.
    """
    if config.batch_size < 1 or config.rows_per_read < 1:
        raise ConfigError("--batch-size must be >= 1")
    if config.workers < 0:
        raise ConfigError(f"--workers must be >= 0 (0: sized to the machine), got {config.workers}")
    store, adapter, meta, out = _check_inputs(config)
    slurm = SlurmConfig.from_yaml(config.slurm_config) if config.slurm_config else None
    # a cluster that cannot run is refused before the output is touched or a job submitted
    check_cluster(ClusterConfig(scheduler=config.scheduler, slurm=slurm))
    fmt = config.fmt or (store.format if config.out is None else backend_for(out).name)
    attrs = _output_attrs(store.meta, meta, config.keep_private_labels)
    store.close()
    if out.exists():
        existing = detect_backend(out)
        # a raw (extract) store is never replaced or added to, even with --overwrite
        old_meta = existing.read_attrs(out)["aamflow"]
        check_writer(out, old_meta, "anonymize")
        old = old_meta["provenance"]
        same_job = (
            old.get("source_store_uuid") == attrs["aamflow"]["provenance"]["source_store_uuid"]
            and old.get("adapter_digest") == meta.weights_digest
        )
        if config.overwrite:
            remove_store(out)
        elif not same_job:
            raise StoreError(
                f"{out}: exists and was made from another store or adapter; use --overwrite or another --out"
            )
        elif sorted(old_meta.get("stripped") or ()) != attrs["aamflow"]["stripped"]:
            raise StoreError(
                f"{out}: exists with other columns stripped ({old_meta.get('stripped')}); "
                "resume it with the same --keep-private-labels setting, or use --overwrite"
            )
        else:
            attrs = existing.read_attrs(out)  # resume: keep the output's own uuid
            attrs["aamflow"]["index"] = None
    create_store(out, attrs, fmt=fmt, exist_ok=True)
    done = committed_parts(out)
    plan = store_plan(config.store)
    todo = [p for p in select_slice(plan, config.part_slice) if p.name not in done]
    task = functools.partial(
        anonymize_part,
        src=str(config.store),
        dst=str(out),
        adapter=str(adapter),
        device=config.device,
        batch_size=config.batch_size,
        rows_per_read=config.rows_per_read,
    )
    n_videos = sum(p.stop - p.start for p in todo)
    cluster = ClusterConfig(
        workers=config.workers
        or auto_workers(len(todo), n_videos, SERIAL_BELOW_VIDEOS, config.device),
        scheduler=config.scheduler,
        part_slice=config.part_slice,
        slurm=slurm,
        quiet=config.quiet,
    )
    with progress_bar(total=len(todo), desc="anonymize", unit="part", quiet=config.quiet) as bar:
        results = run_tasks(task, todo, cluster, on_done=lambda r: bar.update(1))
    summary: dict[str, Any] = {
        "out": str(out),
        "adapter": str(adapter),
        "parts_written": len(results),
        "parts_skipped": len(plan) - len(todo) if config.part_slice is None else None,
        "clips": sum(r["clips"] for r in results),
    }
    if committed_parts(out) >= {p.name for p in plan}:
        index_store(out, writer="anonymize")
        summary["indexed"] = True
    else:
        summary["indexed"] = False
    atomic_write_json(Path(str(out) + ".config.json"), config.to_dict())
    if not config.quiet:
        state = (
            "indexed" if summary["indexed"] else "parts written; index with a run over all parts"
        )
        print(
            f"anonymized {config.store} -> {out} with {adapter} ({summary['parts_written']} part(s) written, {state})"
        )
    return summary
