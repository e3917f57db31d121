"""The adapter checkpoint contract: safetensors weights plus a metadata JSON.

Layout of a checkpoint directory::

    adapter/
      model.safetensors     the AAM state dict (tensors only: nothing to unpickle)
      adapter.json          metadata: arch + hparams, input dim, encoder identity,
                            training store UUID, loss weights, metrics, weights digest
      heads.safetensors     optional: co-trained task heads

Loading never unpickles: safetensors holds raw tensors, and a ``.pt`` state dict is read
only with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import CheckpointError, show

CHECKPOINT_SCHEMA = "aamflow.adapter"
CHECKPOINT_VERSION = 1
WEIGHTS = "model.safetensors"
METADATA = "adapter.json"
HEADS = "heads.safetensors"


@dataclass(frozen=True, kw_only=True)
class AdapterMetadata:
    """What an adapter was trained for and how; ``anonymize`` checks it against the store."""

    arch: str
    hparams: dict[str, Any]
    input_dim: int
    encoder: dict[str, Any]
    train_store_uuid: str
    loss_weights: dict[str, float]
    privacy_loss: str = "ntxent"  # the form of L_B (stages.models.losses.PRIVACY_LOSSES)
    tasks: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    batch_dependent: bool = False
    epochs: int = 0
    seed: int = 0
    # the eraser: kind, rank and, when chosen from the data, the rule and its curve
    eraser: dict[str, Any] = field(default_factory=dict)
    recipe: str = ""  # the named training settings the run started from
    weights_digest: str = ""
    schema: str = CHECKPOINT_SCHEMA
    version: int = CHECKPOINT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: Path | str = "adapter.json") -> AdapterMetadata:
        """Validate and load metadata read from ``adapter.json``: every field must have its
        type (a string where a number belongs, a list where a mapping belongs, is refused
        here, not deep inside the model), and ``weights_digest`` must be a sha256."""
        if not isinstance(d, dict):
            raise CheckpointError(f"{source}: expected a JSON object")
        if d.get("schema") != CHECKPOINT_SCHEMA:
            raise CheckpointError(
                f"{source}: not an aamflow adapter (schema {show(d.get('schema'))})"
            )
        known = set(cls.__dataclass_fields__)
        missing = [k for k in (*_REQUIRED, "weights_digest") if k not in d]
        if missing:
            raise CheckpointError(f"{source}: metadata lacks {', '.join(missing)}")
        values = {k: v for k, v in d.items() if k in known}
        for key, value in values.items():
            problem = _FIELD_CHECKS[key](value)
            if problem:
                raise CheckpointError(f"{source}: field {key!r}: {problem}, got {show(value)}")
        return cls(**values)


_REQUIRED = ("arch", "hparams", "input_dim", "encoder", "train_store_uuid", "loss_weights")
MAX_INPUT_DIM = 1 << 20


def _is_int(v: Any, low: int = 0, high: int | None = None) -> bool:
    ok = isinstance(v, int) and not isinstance(v, bool) and v >= low
    return ok and (high is None or v <= high)


def _is_number(v: Any) -> bool:
    import math

    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, str)) or _is_number(v)


def _str_map(v: Any, ok: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and ok(x) for k, x in v.items())


_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_FIELD_CHECKS: dict[str, Any] = {
    "arch": lambda v: None if isinstance(v, str) and 0 < len(v) <= 100 else "expected a name",
    "hparams": lambda v: (
        None if _str_map(v, _scalar) else "expected a mapping of name -> number, string or bool"
    ),
    "input_dim": lambda v: (
        None if _is_int(v, 1, MAX_INPUT_DIM) else f"expected an integer in [1, {MAX_INPUT_DIM}]"
    ),
    "encoder": lambda v: None if isinstance(v, dict) else "expected a mapping",
    "train_store_uuid": lambda v: None if isinstance(v, str) else "expected a string",
    "loss_weights": lambda v: (
        None if _str_map(v, _is_number) else "expected a mapping of name -> number"
    ),
    "privacy_loss": lambda v: None if isinstance(v, str) else "expected a string",
    "tasks": lambda v: (
        None
        if isinstance(v, list) and all(isinstance(t, str) for t in v)
        else "expected a list of task names"
    ),
    "metrics": lambda v: None if isinstance(v, dict) else "expected a mapping",
    "batch_dependent": lambda v: None if isinstance(v, bool) else "expected true or false",
    "epochs": lambda v: None if _is_int(v) else "expected an integer >= 0",
    "seed": lambda v: None if _is_int(v) else "expected an integer >= 0",
    "eraser": lambda v: (
        None
        if isinstance(v, dict)
        and isinstance(v.get("kind", ""), str)
        and _is_int(v.get("rank", 0), 0, MAX_INPUT_DIM)
        else "expected a mapping with a kind name and an integer rank"
    ),
    "recipe": lambda v: None if isinstance(v, str) and len(v) <= 100 else "expected a name",
    # a blank or malformed digest would let any weights pass unverified
    "weights_digest": lambda v: (
        None
        if isinstance(v, str) and _DIGEST.fullmatch(v)
        else "expected 'sha256:' and 64 hex digits (the weights are verified against it)"
    ),
    "schema": lambda v: None,
    "version": lambda v: (
        None
        if _is_int(v, 1, CHECKPOINT_VERSION)
        else f"expected a version this aamflow reads (<= {CHECKPOINT_VERSION})"
    ),
}


def tensors_digest(tensors: dict[str, Any]) -> str:
    """sha256 over names, dtypes, shapes and bytes: identifies the weights of an adapter."""
    import torch

    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return "sha256:" + h.hexdigest()


def save_checkpoint(
    directory: str | Path,
    state_dict: dict[str, Any],
    meta: AdapterMetadata,
    heads: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint directory atomically (temporary directory, then rename)."""
    from safetensors.torch import save_file

    out = Path(directory)
    import shutil

    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    digest = tensors_digest(tensors)
    meta_dict = {**meta.to_dict(), "weights_digest": digest}
    try:
        save_file(tensors, str(tmp / WEIGHTS))
        if heads:
            head_tensors = {k: v.detach().cpu().contiguous() for k, v in heads.items()}
            save_file(head_tensors, str(tmp / HEADS))
        (tmp / METADATA).write_text(json.dumps(meta_dict, indent=2, sort_keys=True))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a full disk leaves no half checkpoint
        raise
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)
    return out


def _load_tensors(path: Path) -> dict[str, Any]:
    import torch

    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path}: damaged weights file ({e})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses pickled code: report, never execute
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path}: refused to load (not a plain tensor state dict): {first}"
        ) from None
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors")
    return obj


def load_checkpoint(path: str | Path) -> tuple[dict[str, Any], AdapterMetadata, dict[str, Any]]:
    """Load (state dict, metadata, heads) from a checkpoint directory.

    Raises CheckpointError for a missing, damaged or unsafe checkpoint, or one whose
    weights do not match the digest in its metadata.
    """
    p = Path(path)
    if not p.is_dir():
        raise CheckpointError(
            f"{p}: no adapter checkpoint here (expected a directory with {METADATA})"
        )
    meta_file = p / METADATA
    if not meta_file.is_file():
        raise CheckpointError(f"{p}: missing {METADATA}")
    try:
        meta_raw = json.loads(meta_file.read_text(encoding="utf-8"))
    except (ValueError, OSError, RecursionError) as e:
        detail = "nested too deeply" if isinstance(e, RecursionError) else str(e)[:200]
        raise CheckpointError(f"{meta_file}: invalid JSON ({detail})") from None
    meta = AdapterMetadata.from_dict(meta_raw, meta_file)
    weights = p / WEIGHTS
    if not weights.is_file():
        legacy = p / "model.pt"
        if not legacy.is_file():
            raise CheckpointError(f"{p}: missing {WEIGHTS}")
        weights = legacy
    state = _load_tensors(weights)
    if tensors_digest(state) != meta.weights_digest:
        raise CheckpointError(f"{weights}: weights do not match the digest in {METADATA}")
    heads = _load_tensors(p / HEADS) if (p / HEADS).is_file() else {}
    for file, tensors in ((weights, state), (p / HEADS, heads)):
        bad = nonfinite_tensors(tensors)
        if bad:
            raise CheckpointError(
                f"{file}: non-finite weights in {', '.join(bad[:3])}"
                f"{' ...' if len(bad) > 3 else ''} (a diverged training run); retrain it"
            )
    return state, meta, heads


def nonfinite_tensors(tensors: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors that hold a NaN or an infinity."""
    import torch

    return [
        name
        for name, t in tensors.items()
        if t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]


def check_compatible(meta: AdapterMetadata, encoder: dict[str, Any], dim: int, source: str) -> None:
    """Refuse an adapter trained for another encoder or feature dimension."""
    if int(meta.input_dim) != int(dim):
        raise CheckpointError(
            f"{source}: adapter expects {meta.input_dim}-d features, store has {dim}-d"
        )
    for key in ("name", "weights_digest"):
        want, have = meta.encoder.get(key), encoder.get(key)
        if want != have:
            raise CheckpointError(
                f"{source}: adapter was trained for encoder {key} {want!r}, store has {have!r}"
            )


def default_adapter_dir(store: str | Path) -> Path:
    """Where ``train-adapter --store S`` writes and ``anonymize --store S`` looks by default."""
    p = Path(store)
    return p.with_name(p.name + ".adapter")
