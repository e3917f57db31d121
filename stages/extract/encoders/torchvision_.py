"""torchvision video models (``torchvision:<arch>``) from a local state dict.

``create_encoder("torchvision:r3d_18", weights="r3d_18.pth")`` builds the architecture,
loads the state dict with ``torch.load(weights_only=True)`` (the head's class count is read
from it, so fine-tuned checkpoints load too) and replaces the classifier with ``Identity``:
the feature is the penultimate pooled vector. Without ``weights`` the model keeps seeded
random weights (tests, smoke runs). torchvision is imported only here, when the factory
runs: it is an optional dependency and its wheel must match the installed torch.
Preprocessing follows each arch's torchvision weight transforms, with a short-side resize.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from aamflow.schemas.errors import ConfigError

from ..preprocess import ClipTransform, PooledEncoder, check_precision, prepare_module
from ._base import EncoderIdentity, register_encoder, weights_digest

_KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
_KINETICS_STD = (0.22803, 0.22145, 0.216989)


@dataclass(frozen=True, kw_only=True)
class Arch:
    """One torchvision video architecture: feature size, head attribute and preprocessing."""

    dim: int
    head: str  # attribute replaced by Identity
    head_weight: str  # state-dict key whose first dim is the class count
    resize: int
    crop: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    clip_len: int = 16


_RESNET3D = {
    "dim": 512,
    "head": "fc",
    "head_weight": "fc.weight",
    "resize": 128,
    "crop": 112,
    "mean": _KINETICS_MEAN,
    "std": _KINETICS_STD,
}
ARCHS: dict[str, Arch] = {
    "r3d_18": Arch(**_RESNET3D),
    "r2plus1d_18": Arch(**_RESNET3D),
    "mc3_18": Arch(**_RESNET3D),
    "s3d": Arch(
        dim=1024,
        head="classifier",
        head_weight="classifier.1.weight",
        resize=256,
        crop=224,
        mean=_KINETICS_MEAN,
        std=_KINETICS_STD,
    ),
    "mvit_v2_s": Arch(
        dim=768,
        head="head",
        head_weight="head.1.weight",
        resize=256,
        crop=224,
        mean=(0.45, 0.45, 0.45),
        std=(0.225, 0.225, 0.225),
    ),
    "swin3d_t": Arch(
        dim=768,
        head="head",
        head_weight="head.weight",
        resize=256,
        crop=224,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
    ),
}


def _video_models():
    try:
        from torchvision.models import video
    except Exception as e:  # ImportError, or a wheel built for another torch (RuntimeError)
        raise ConfigError(
            "encoder 'torchvision' needs a torchvision build matching the installed torch "
            f"({type(e).__name__}: {e})"
        ) from None
    return video


def _load_state_dict(path: str) -> dict[str, torch.Tensor]:
    if not Path(path).is_file():
        raise ConfigError(f"torchvision weights {path!r}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling refused (weights_only) or a damaged file
        raise ConfigError(f"torchvision weights {path!r} cannot be loaded: {e}") from None
    for key in ("state_dict", "model"):  # common training-checkpoint wrappers
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ConfigError(f"torchvision weights {path!r} is not a state dict")
    return obj


@register_encoder("torchvision")
def torchvision_video(
    *,
    variant: str | None = None,
    weights: str | None = None,
    clip_len: int | None = None,
    device: str = "cpu",
    precision: str = "fp32",
    seed: int = 0,
) -> PooledEncoder:
    """A torchvision video model ``variant`` with its classifier replaced by Identity."""
    check_precision(precision)
    if variant not in ARCHS:  # also the bare name "torchvision"
        raise ConfigError(
            f"unknown torchvision video arch {variant!r}; valid: {', '.join(sorted(ARCHS))}"
        )
    arch = ARCHS[variant]
    video = _video_models()
    state = _load_state_dict(weights) if weights is not None else None
    num_classes = 400
    if state is not None and arch.head_weight in state:
        num_classes = int(state[arch.head_weight].shape[0])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = getattr(video, variant)(weights=None, num_classes=num_classes)
    if state is not None and arch.head_weight not in state:  # a head-less (feature) state dict
        setattr(model, arch.head, torch.nn.Identity())
    if state is not None:
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ConfigError(
                f"torchvision weights {weights!r} do not fit {variant}: {e}"
            ) from None
    setattr(model, arch.head, torch.nn.Identity())

    transform = ClipTransform(resize=arch.resize, crop=arch.crop, mean=arch.mean, std=arch.std)
    source: Any = str(weights) if weights is not None else f"random:seed={seed}"
    identity = EncoderIdentity(
        name=f"torchvision:{variant}",
        dim=arch.dim,
        weights_digest=weights_digest(model),
        clip_len=clip_len or arch.clip_len,
        preprocessing={**transform.to_dict(), "pooling": "penultimate", "source": source},
    )
    return PooledEncoder(
        identity=identity,
        module=prepare_module(model, device),
        transform=transform,
        precision=precision,
    )
