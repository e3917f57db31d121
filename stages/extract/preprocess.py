"""Torch helpers shared by encoders: clip preprocessing and precision-aware inference.

Preprocessing turns decoded frames ``[T, H, W, 3]`` uint8 into one model input
``[3, T, S, S]`` float32 in two steps: a geometric one (resize the short side, centre crop)
that stays uint8 and runs in data-loading workers, and a normalising one (scale to [0, 1],
subtract the mean, divide by the std) that runs where the encoder runs, so workers ship a
quarter of the bytes. Both work frame by frame (no temporal mixing), which the loader relies
on to preprocess each decoded frame once even when clips overlap. Resizing is in uint8
(torch's fast antialiased channels-last path, as PIL-based processors do).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

PRECISIONS = ("fp32", "bf16", "fp16")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

# frames resized per interpolate call: bounds the worker's peak memory on large videos
_RESIZE_BATCH = 32


def to_tchw(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` (numpy or torch) as a channels-last ``[T, 3, H, W]`` view."""
    x = torch.from_numpy(np.asarray(frames)) if not isinstance(frames, torch.Tensor) else frames
    if x.dim() != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected frames [T, H, W, 3], got {tuple(x.shape)}")
    return x.permute(0, 3, 1, 2)


def short_side_size(height: int, width: int, short: int) -> tuple[int, int]:
    """(H, W) after scaling so that the short side is ``short``, keeping the aspect ratio."""
    if height <= width:
        return short, max(short, round(width * short / height))
    return max(short, round(height * short / width)), short


def resize_short_side(x: torch.Tensor, short: int, mode: str = "bilinear") -> torch.Tensor:
    """Resize ``[T, C, H, W]`` so its short side is ``short`` (antialiased, dtype kept)."""
    h, w = x.shape[-2:]
    size = short_side_size(h, w, short)
    if size == (h, w):
        return x
    out = [
        F.interpolate(x[i : i + _RESIZE_BATCH], size=size, mode=mode, antialias=True)
        for i in range(0, x.shape[0], _RESIZE_BATCH)
    ]
    return torch.cat(out) if len(out) > 1 else out[0]


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size x size`` window of ``[..., H, W]`` (zero-padded if smaller)."""
    h, w = x.shape[-2:]
    if h < size or w < size:  # only when resize was skipped or rounding lost a pixel
        ph, pw = max(size - h, 0), max(size - w, 0)
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


def normalize(
    x: torch.Tensor, mean: Sequence[float], std: Sequence[float], dim: int = 0
) -> torch.Tensor:
    """uint8 (0-255) or float (0-1) with channels on ``dim`` to float32 ``(x - mean) / std``,
    on ``x``'s device."""
    scale, shift = _affine(tuple(mean), tuple(std), x.dtype == torch.uint8, x.device)
    view = (-1,) + (1,) * (x.dim() - 1 - dim)
    # one strided copy into float, then an in-place multiply and subtract: two elementwise
    # float32 ops, so the bytes are the same on any device and at any batch size
    out = torch.empty(x.shape, dtype=torch.float32, device=x.device).copy_(x)
    return out.mul_(scale.view(view)).sub_(shift.view(view))


@functools.lru_cache(maxsize=16)
def _affine(
    mean: tuple[float, ...], std: tuple[float, ...], from_uint8: bool, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 ``(scale, shift)`` with ``x * scale - shift == (x / 255 - mean) / std``, made
    once per device: a fresh host-to-GPU copy would block until the GPU is idle."""
    scale = 1.0 / torch.tensor(std, dtype=torch.float32)
    shift = torch.tensor(mean, dtype=torch.float32) * scale
    if from_uint8:
        scale = scale / 255.0
    return scale.to(device), shift.to(device)


@dataclass(frozen=True, kw_only=True)
class ClipTransform:
    """Resize short side to ``resize``, centre crop ``crop``, normalise with ``mean``/``std``.

    Calling it maps uint8 frames ``[T, H, W, 3]`` to float32 ``[3, T, crop, crop]``; it is
    :meth:`normalize` after :meth:`crop_frames` (and a transpose). It is a picklable value,
    so it can travel to loader worker processes.
    """

    resize: int
    crop: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"

    def __call__(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        return self.normalize(self.crop_frames(frames).permute(1, 0, 2, 3))

    def crop_frames(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The geometric part: uint8 ``[T, H, W, 3]`` -> uint8 ``[T, 3, crop, crop]`` (a
        channels-last view; frame-major, so frames concatenate along dim 0)."""
        x = resize_short_side(to_tchw(frames), self.resize, self.interpolation)
        return center_crop(x, self.crop)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """The normalising part: uint8 clips ``[3, T, S, S]`` or a batch ``[B, 3, T, S, S]``
        -> float32 of the same shape, on ``x``'s device."""
        return normalize(x, self.mean, self.std, dim=x.dim() - 4)

    def to_dict(self) -> dict[str, Any]:
        return {
            "resize_short": self.resize,
            "crop": self.crop,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "antialias": True,
        }


# Ten-crop as the I3D / UCF-Crime features are made: the short side is resized to 256 for
# 224-pixel crops (here: the crop side x 256 / 224, or the encoder's own resize when larger),
# then torchvision's TenCrop order: the 4 corners and the centre of the frame, then the same 5
# of its mirror image (horizontal flip). A one-crop store holds the encoder's centre crop.
TEN_CROP_RESIZE_RATIO = 256 / 224


def ten_crop_resize(resize: int, crop: int) -> int:
    """The short side frames are resized to before ten-cropping ``crop x crop`` windows."""
    return max(int(resize), round(crop * TEN_CROP_RESIZE_RATIO))


def five_crop(x: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Top-left, top-right, bottom-left, bottom-right and centre ``size x size`` windows of
    ``[..., H, W]`` (torchvision's ``five_crop`` order; zero-padded if smaller)."""
    h, w = x.shape[-2:]
    if h < size or w < size:
        ph, pw = max(size - h, 0), max(size - w, 0)
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        h, w = x.shape[-2:]
    return [
        x[..., :size, :size],
        x[..., :size, w - size :],
        x[..., h - size :, :size],
        x[..., h - size :, w - size :],
        center_crop(x, size),
    ]


@dataclass(frozen=True, kw_only=True)
class TenCrop:
    """The geometric preprocessing of a ten-crop store, for the loader workers.

    Calling it maps uint8 frames ``[T, H, W, 3]`` to uint8 ``[T * 10, 3, crop, crop]``:
    frame-major, each frame's ten views consecutive in :data:`aamflow.schemas.layout.CROP_NAMES`
    order. A picklable value, like :class:`ClipTransform`.
    """

    resize: int
    crop: int
    interpolation: str = "bilinear"

    @classmethod
    def of(cls, transform: Any) -> TenCrop:
        """The ten-crop geometry for an encoder's transform (its crop side and interpolation)."""
        try:
            resize, crop = int(transform.resize), int(transform.crop)
        except (AttributeError, TypeError):
            from aamflow.schemas.errors import ConfigError

            raise ConfigError(
                f"this encoder's preprocessing ({type(transform).__name__}) has no resize/crop "
                "geometry, so it cannot be ten-cropped; use crops: 1"
            ) from None
        return cls(
            resize=ten_crop_resize(resize, crop),
            crop=crop,
            interpolation=getattr(transform, "interpolation", "bilinear"),
        )

    def __call__(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = resize_short_side(to_tchw(frames), self.resize, self.interpolation)
        views = five_crop(x, self.crop) + five_crop(x.flip(-1), self.crop)
        return torch.stack(views, 1).reshape(-1, *views[0].shape[1:])

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": 10,
            "resize_short": self.resize,
            "crop": self.crop,
            "interpolation": self.interpolation,
            "order": "torchvision TenCrop: 4 corners + centre, then the same of the mirror image",
        }


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU when it has neither); a
    filter bank such as ``builtin`` has buffers only."""
    p = next(module.parameters(), None)
    if p is None:
        p = next(module.buffers(), None)
    return p.device if p is not None else torch.device("cpu")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        from aamflow.schemas.errors import ConfigError

        raise ConfigError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    return precision


def autocast(device: torch.device | str, precision: str) -> contextlib.AbstractContextManager:
    """Autocast for bf16/fp16 on CUDA; nothing otherwise (CPU always runs fp32).

    For ``fp32`` it enters no context at all, so an enclosing autocast still applies.
    """
    device = torch.device(device)
    check_precision(precision)
    if precision == "fp32" or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=_AUTOCAST_DTYPES[precision])


def run_pooled(module: torch.nn.Module, batch: torch.Tensor, precision: str) -> torch.Tensor:
    """``module(batch)`` on the module's device under inference mode and ``precision``.

    ``batch`` is ``[B, 3, T, S, S]``; the result is float32 ``[B, D]`` on that device.
    """
    device = module_device(module)
    with torch.inference_mode(), autocast(device, precision):
        out = module(batch.to(device, non_blocking=True))
    return out.float()


def batches(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` covering ``range(n)``."""
    for lo in range(0, n, size):
        yield slice(lo, min(lo + size, n))


@dataclass(frozen=True, kw_only=True)
class PooledEncoder:
    """An :class:`~aamflow.stages.extract.encoders.Encoder` made of a transform and a module.

    ``module`` maps ``[B, 3, T, S, S]`` to pooled ``[B, D]``; ``precision`` (fp32, bf16,
    fp16) is the autocast used on CUDA, ignored on CPU.
    """

    identity: Any
    module: torch.nn.Module
    transform: ClipTransform
    precision: str = "fp32"

    def preprocess(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        return self.transform(frames)

    def encode(self, batch: torch.Tensor) -> torch.Tensor:
        return run_pooled(self.module, batch, self.precision)


def prepare_module(module: torch.nn.Module, device: str | torch.device) -> torch.nn.Module:
    """A frozen module in eval mode on ``device``."""
    module.eval().requires_grad_(False)
    return module.to(device)


def hf_processor_config(source: str) -> dict[str, Any]:
    """The (video) preprocessor JSON of a HF model directory or hub id; {} when it has none."""
    import json
    from pathlib import Path

    names = ("video_preprocessor_config.json", "preprocessor_config.json")
    if Path(source).is_dir():
        for name in names:
            if (Path(source) / name).is_file():
                return json.loads((Path(source) / name).read_text())
        return {}
    from transformers.utils import cached_file

    for name in names:
        try:
            path = cached_file(source, name, _raise_exceptions_for_missing_entries=False)
        except OSError:  # offline and not cached, or no such repo: the model load will say so
            path = None
        if path:
            return json.loads(Path(path).read_text())
    return {}


def side_from(value: Any, default: int) -> int:
    """A square side from a HF size field: int, {shortest_edge}, {height, width} or None."""
    if value is None:
        return default
    if isinstance(value, int):
        return value
    if "shortest_edge" in value:
        return int(value["shortest_edge"])
    if "height" in value:
        return int(min(value["height"], value.get("width", value["height"])))
    return default
