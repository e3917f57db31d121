"""The resumable training state of train-adapter: ``<out>/train_state/``.

``tensors.safetensors`` holds the AAM (``aam.*``), the heads (``head.<task>.*``), the
optimizer's tensor state (``opt.<param index>.<key>``) and the RNG states (``rng.*``);
``state.json`` holds the epoch, the optimizer's hyperparameters, the AMP grad-scaler state
and the non-tensor optimizer state. Nothing is pickled, so loading executes no code. The
folder is replaced atomically once per epoch: a crash leaves the previous epoch's state.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aamflow.schemas.checkpoint import nonfinite_tensors
from aamflow.schemas.errors import CheckpointError

STATE_DIR = "train_state"
TENSORS = "tensors.safetensors"
META = "state.json"


def _state_dirs(out: Path) -> tuple[Path, Path, Path]:
    return out / STATE_DIR, out / f".{STATE_DIR}.tmp", out / f".{STATE_DIR}.old"


def has_state(out: Path) -> bool:
    """True when ``out`` holds a resumable training state."""
    live, _, old = _state_dirs(out)
    return (live / META).is_file() or (old / META).is_file()


def save_state(
    out: Path,
    *,
    epoch: int,
    aam: nn.Module,
    heads: dict[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    scaler: Any,
    gen: torch.Generator,
    device: torch.device,
) -> Path:
    """Write the state after ``epoch`` completed epochs, replacing the previous one."""
    from safetensors.torch import save_file

    live, tmp, old = _state_dirs(out)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors: dict[str, torch.Tensor] = {f"aam.{k}": v for k, v in aam.state_dict().items()}
    for task, head in heads.items():
        tensors.update({f"head.{task}.{k}": v for k, v in head.state_dict().items()})
    opt = optimizer.state_dict()
    plain_state: dict[str, dict[str, Any]] = {}
    for index, entries in opt["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{index}.{key}"] = value
            else:
                plain_state.setdefault(str(index), {})[key] = value
    tensors["rng.cpu"] = torch.get_rng_state()
    tensors["rng.gen"] = gen.get_state()
    if device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / TENSORS))
    meta = {
        "epoch": int(epoch),
        "param_groups": opt["param_groups"],
        "opt_state": plain_state,
        "scaler": scaler.state_dict(),
    }
    (tmp / META).write_text(json.dumps(meta, indent=2, sort_keys=True))
    if live.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(live, old)
    os.replace(tmp, live)
    shutil.rmtree(old, ignore_errors=True)
    return live


def load_state(
    out: Path,
    *,
    aam: nn.Module,
    heads: dict[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    scaler: Any,
    gen: torch.Generator,
    device: torch.device,
) -> int:
    """Restore everything ``save_state`` wrote, in place; returns the completed epochs."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    live, _, old = _state_dirs(out)
    folder = live if (live / META).is_file() else old
    try:
        meta = json.loads((folder / META).read_text())
        tensors = load_file(str(folder / TENSORS))
    except (OSError, ValueError, SafetensorError) as e:
        msg = f"{folder}: damaged training state ({e}); remove it to restart"
        raise CheckpointError(msg) from None
    bad = nonfinite_tensors(tensors)
    if bad:
        raise CheckpointError(
            f"{folder}: training state holds non-finite values ({', '.join(bad[:3])}); "
            "remove it to restart"
        )
    try:
        aam.load_state_dict(_prefixed(tensors, "aam."))
        for task, head in heads.items():
            head.load_state_dict(_prefixed(tensors, f"head.{task}."))
        state: dict[int, dict[str, Any]] = {}
        for name, value in tensors.items():
            if name.startswith("opt."):
                _, index, key = name.split(".", 2)
                state.setdefault(int(index), {})[key] = value  # moved by load_state_dict
        for index, entries in meta["opt_state"].items():
            state.setdefault(int(index), {}).update(entries)
        groups = meta["param_groups"]
        for g in groups:
            if "betas" in g:
                g["betas"] = tuple(g["betas"])
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (RuntimeError, KeyError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{folder}: training state does not fit this run ({first}); remove it to restart"
        ) from None
    if meta["scaler"]:
        scaler.load_state_dict(meta["scaler"])
    torch.set_rng_state(tensors["rng.cpu"])
    gen.set_state(tensors["rng.gen"])
    if device.type == "cuda" and "rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)
    return int(meta["epoch"])


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
