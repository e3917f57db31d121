"""The CUDA paths: train-adapter steps and runs, ``apply_aam``, anonymize and extract on a GPU.

Every test is marked ``cuda`` and skipped when torch sees no CUDA device, so CI (no GPU)
skips them all. On a GPU machine::

    python -m pytest -m cuda tests/test_cuda.py -rA

``AAMFLOW_TEST_DEVICE=cpu`` runs the same tests on the CPU instead, to check their own logic
on a machine without a GPU. The checks that only mean something on CUDA are skipped there
(no host synchronisation inside a training epoch, CUDA against CPU results, bf16 differing
from fp32), and bf16/fp16 run as fp32 because autocast applies on CUDA only.
"""

from __future__ import annotations

import copy
import json
import math
import os
import traceback
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from aamflow.schemas.checkpoint import (
    METADATA,
    AdapterMetadata,
    default_adapter_dir,
    load_checkpoint,
    save_checkpoint,
)
from aamflow.schemas.fake import fake_store
from aamflow.schemas.layout import FEATURE_ARRAYS
from aamflow.schemas.store import open_store
from aamflow.stages.anonymize.config import AnonymizeConfig
from aamflow.stages.anonymize.stage import run_anonymize
from aamflow.stages.extract.config import ExtractConfig
from aamflow.stages.extract.stage import run_extract
from aamflow.stages.models.aam import apply_aam, build_aam, is_identity
from aamflow.stages.train.config import TrainConfig
from aamflow.stages.train.data import video_roles
from aamflow.stages.train.stage import (
    LOSS_NAMES,
    amp_dtype,
    build_model,
    place_latents,
    run_train,
    train_one_epoch,
)
from tests.corpus import subset_manifest

DEVICE = os.environ.get("AAMFLOW_TEST_DEVICE", "cuda")
ON_CUDA = torch.device(DEVICE).type == "cuda"
TASKS = ("ar", "tad", "ad")

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        ON_CUDA and not torch.cuda.is_available(),
        reason="needs a CUDA device (AAMFLOW_TEST_DEVICE=cpu runs these tests on the CPU)",
    ),
]
cuda_only = pytest.mark.skipif(not ON_CUDA, reason="only meaningful on CUDA")


# --- fixtures and helpers ---------------------------------------------------------------


@pytest.fixture(scope="module")
def train_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 videos (18 train) of 32-d features with AR, TAD and AD labels."""
    return fake_store(tmp_path_factory.mktemp("cuda_train") / "features.h5", n_videos=30, dim=32)


def resident_run(store_path: Path, precision: str) -> tuple:
    """(config, model, resident data, generator, autocast dtype) of a tiny three-task run."""
    config = TrainConfig(
        store=store_path,
        tasks=TASKS,
        batch_size=8,
        lr=1e-3,
        device=DEVICE,
        precision=precision,
        quiet=True,
    )
    device = torch.device(DEVICE)
    store = open_store(store_path)
    roles = video_roles(store, "train")
    place = place_latents(store, roles.select(roles.used(TASKS)), config, device)
    assert place.resident is not None
    torch.manual_seed(0)
    model = build_model(config, store.feature_dim, len(store.label_spaces.actions), device)
    gen = torch.Generator(device=device).manual_seed(0)
    return config, model, place.resident, gen, amp_dtype(config, device)


def perturbed_aam(arch: str, dim: int, scale: float = 0.02) -> torch.nn.Module:
    """A seeded AAM with random residual weights (an untrained one is the identity)."""
    torch.manual_seed(0)
    module = build_aam(arch, dim)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


# --- train-adapter ----------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_training_steps_change_the_aam_with_finite_losses(
    train_store: Path, precision: str
) -> None:
    config, model, data, gen, amp = resident_run(train_store, precision)
    expected = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    assert amp is (expected if ON_CUDA else None)
    assert data.static.device.type == torch.device(DEVICE).type
    before = [p.detach().clone() for p in model.aam.parameters()]
    for _ in range(6):
        sums, steps, videos = train_one_epoch(model, iter([data]), config, gen, amp)
    means = dict(zip(LOSS_NAMES, (sums / steps).tolist(), strict=True))
    assert all(math.isfinite(v) for v in means.values()), means
    assert steps == 2 and videos == 16
    moved = max(
        float((p.detach() - b).abs().max())
        for p, b in zip(model.aam.parameters(), before, strict=True)
    )
    scale = model.scaler.get_scale() if model.scaler.is_enabled() else None
    print(f"{precision}: losses {means}, max AAM param change {moved:.3g}, grad scale {scale}")
    assert moved > 0, f"{precision}: no optimizer step changed the AAM (grad scale {scale})"
    assert not is_identity(model.aam)
    if precision == "fp16" and ON_CUDA:
        assert model.scaler.is_enabled() and 0 < scale < math.inf


@cuda_only
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_a_training_epoch_never_waits_for_the_host(train_store: Path, precision: str) -> None:
    config, model, data, gen, amp = resident_run(train_store, precision)
    train_one_epoch(model, iter([data]), config, gen, amp)  # lazy init outside the check
    torch.cuda.synchronize()
    caught: list[str] = []

    def record(message, category, filename, lineno, file=None, line=None) -> None:
        stack = "".join(traceback.format_stack(limit=12)[:-2])
        caught.append(f"{filename}:{lineno}: {category.__name__}: {message}\n{stack}")

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(2):
                sums, steps, _ = train_one_epoch(model, iter([data]), config, gen, amp)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    # set_sync_debug_mode itself warns once per process that it is a prototype: not a sync
    syncs = [c for c in caught if "synchroniz" in c.lower() and "prototype feature" not in c]
    assert not syncs, f"{len(syncs)} host synchronisation(s) in a {precision} epoch:\n" + (
        "\n".join(syncs[:5])
    )
    assert torch.isfinite(sums).all()


def test_run_train_in_bf16_writes_an_adapter_and_resumes(train_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "adapter"
    config = TrainConfig(
        store=train_store,
        out=out,
        epochs=2,
        batch_size=8,
        lr=1e-3,
        val_every=1,
        device=DEVICE,
        precision="bf16",
        quiet=True,
    )
    first = run_train(config)
    assert (out / METADATA).is_file() and first["placement"] == "resident"
    second = run_train(replace(config, epochs=3, resume=True))
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert second["epochs"] == 3 and [r["epoch"] for r in rows] == [1, 2, 3]
    metrics = second["metrics"]
    print(f"run_train bf16 on {DEVICE}: {metrics}")
    for key in ("loss", "l_lc", "l_t", "l_b", "l_ar", "l_tad", "l_ad"):
        assert metrics[key] is not None and math.isfinite(metrics[key]), (key, metrics)
    assert "val_reid_top1" in metrics and "val_ar_top1" in metrics
    state, meta, _ = load_checkpoint(out)
    module = build_aam(meta.arch, meta.input_dim, **meta.hparams)
    module.load_state_dict(state)
    assert not is_identity(module) and meta.epochs == 3


# --- apply_aam and anonymize ------------------------------------------------------------


@pytest.mark.parametrize("arch", ["token_attention", "residual_mlp", "paper"])
def test_apply_aam_bytes_do_not_follow_the_batch_size_and_match_the_cpu(arch: str) -> None:
    cpu = perturbed_aam(arch, 768)
    x = 3.0 * torch.randn(3000, 768, generator=torch.Generator().manual_seed(1))
    reference = apply_aam(cpu, x, 4096)  # CPU fp32
    module = copy.deepcopy(cpu).to(DEVICE)
    outs = {bs: apply_aam(module, x, bs) for bs in (256, 1000, 4096)}
    for bs, out in outs.items():
        assert out.device.type == "cpu" and out.dtype == torch.float32
        assert out.numpy().tobytes() == outs[256].numpy().tobytes(), f"batch {bs} != batch 256"
    on_device = apply_aam(module, x.to(DEVICE), 1000)  # features already on the device
    assert on_device.device.type == torch.device(DEVICE).type
    assert on_device.cpu().numpy().tobytes() == outs[256].numpy().tobytes()
    scale = float(reference.abs().max())
    diff = float((outs[256] - reference).abs().max())
    print(f"{arch}: {DEVICE} vs CPU fp32 max abs diff {diff:.3g} (feature scale {scale:.3g})")
    assert diff <= 1e-3 * scale, (
        f"{arch}: {DEVICE} vs CPU max abs diff {diff:.3g}, scale {scale:.3g}"
    )
    assert not torch.equal(reference, x)  # the adapter does something


def test_anonymize_bytes_do_not_follow_the_batch_size(tmp_path: Path) -> None:
    store = fake_store(tmp_path / "features.zarr", n_videos=24, dim=64, part_size=8)
    s = open_store(store)
    module = perturbed_aam("token_attention", s.feature_dim)
    meta = AdapterMetadata(
        arch=module.arch,
        hparams=module.hparams,
        input_dim=s.feature_dim,
        encoder=s.encoder,
        train_store_uuid=s.uuid,
        loss_weights={"lc": 100.0, "t": 1.0, "b": 1.0},
    )
    save_checkpoint(default_adapter_dir(store), module.state_dict(), meta)

    def anonymize(name: str, device: str, batch_size: int) -> dict[str, np.ndarray]:
        out = tmp_path / name
        run_anonymize(
            AnonymizeConfig(store=store, out=out, device=device, batch_size=batch_size, quiet=True)
        )
        a = open_store(out)
        return {k: a.read(k) for k in FEATURE_ARRAYS}

    small = anonymize("small.zarr", DEVICE, 100)
    large = anonymize("large.zarr", DEVICE, 5000)
    raw = {k: s.read(k) for k in FEATURE_ARRAYS}
    for k in FEATURE_ARRAYS:
        assert small[k].shape == raw[k].shape and small[k].dtype == np.float32
        assert small[k].tobytes() == large[k].tobytes(), k
        assert not np.allclose(small[k], raw[k]), k
    if ON_CUDA:
        cpu = anonymize("cpu.zarr", "cpu", 5000)
        for k in FEATURE_ARRAYS:
            diff = float(np.abs(small[k] - cpu[k]).max())
            scale = float(np.abs(cpu[k]).max())
            print(f"anonymize {k}: CUDA vs CPU max abs diff {diff:.3g} (scale {scale:.3g})")
            assert diff <= 1e-3 * scale, (k, diff, scale)


# --- extract ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two AR and two TAD videos of the tiny synth corpus."""
    from aamflow.stages.synth import SynthConfig, run_synth

    corpus = run_synth(
        SynthConfig(out=tmp_path_factory.mktemp("cuda_corpus"), preset="tiny", quiet=True)
    )
    return subset_manifest(
        corpus, tmp_path_factory.mktemp("cuda_m") / "m.yaml", 2, tasks=("ar", "tad")
    )


def test_extract_builtin_in_bf16_matches_the_cpu_in_fp32(
    tiny_manifest: Path, tmp_path: Path
) -> None:
    common = dict(manifest=tiny_manifest, part_size=4, quiet=True)
    run_extract(ExtractConfig(out=tmp_path / "cpu.zarr", loader_workers=0, **common))
    # a loader worker process: pinned batches on CUDA; another batch size than the reference
    run_extract(
        ExtractConfig(
            out=tmp_path / "dev.zarr",
            device=DEVICE,
            precision="bf16",
            batch_size=16,
            loader_workers=1,
            **common,
        )
    )
    ref, dev = open_store(tmp_path / "cpu.zarr"), open_store(tmp_path / "dev.zarr")
    assert (ref.videos["status"] == "ok").all() and len(ref.videos) == 4
    for col in ("clip_count", "static_count"):
        assert dev.videos[col].tolist() == ref.videos[col].tolist(), col
    for k in FEATURE_ARRAYS:
        a, b = ref.read(k), dev.read(k)
        assert a.shape == b.shape and b.dtype == np.float32, k
        cos = cosine_rows(a, b)
        print(f"extract builtin {k}: {len(a)} clips, min cosine {cos.min():.6f} ({DEVICE} bf16)")
        assert cos.min() > 0.99, (k, float(cos.min()))


def test_videomae_in_bf16_gives_finite_features_of_its_width() -> None:
    from aamflow.stages.extract.encoders import create_encoder
    from aamflow.stages.extract.stage import _encode_pixels, _encoder

    enc = _encoder("videomae", json.dumps({"config": "tiny"}), DEVICE)
    t, dim = enc.identity.clip_len, enc.identity.dim
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (t, 40, 56, 3), dtype=np.uint8) for _ in range(5)]
    x = torch.stack([enc.preprocess(f) for f in frames])
    # the path extract runs: uint8 crops gathered and normalised on the device
    pixels = torch.cat([enc.transform.crop_frames(f) for f in frames])
    gather = torch.arange(5 * t).view(5, t)
    bf16 = _encode_pixels(enc, pixels, gather, DEVICE, "bf16").cpu().numpy()
    fp32 = _encode_pixels(enc, pixels, gather, DEVICE, "fp32").cpu().numpy()
    assert bf16.shape == (5, dim) and bf16.dtype == np.float32 and np.isfinite(bf16).all()
    cos = cosine_rows(bf16, fp32)
    print(f"videomae tiny {DEVICE}: bf16 vs fp32 min cosine {cos.min():.6f}")
    assert cos.min() > 0.95
    if ON_CUDA:
        assert not np.array_equal(bf16, fp32), "bf16 autocast was not applied"
    # the encoder's own precision option (a PooledEncoder built for the device)
    own = create_encoder("videomae", config="tiny", device=DEVICE, precision="bf16")
    out = own.encode(x)
    assert out.dtype == torch.float32 and out.shape == (5, dim) and torch.isfinite(out).all()
    assert out.device.type == torch.device(DEVICE).type
