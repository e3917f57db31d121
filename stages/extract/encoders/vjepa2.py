"""V-JEPA 2 (HF transformers ``VJEPA2Model``) clip encoder: mean-pooled encoder tokens.

``create_encoder("vjepa2", weights=...)`` loads a local directory or a hub id such as
``facebook/vjepa2-vitl-fpc64-256``; only the encoder runs (the predictor is dropped). Its
3-D RoPE accepts any even clip length and crop, so ``clip_len=`` and ``crop=`` may differ
from the checkpoint's ``frames_per_clip`` / ``crop_size``. ``config=`` builds random
weights: ``vitl`` (the default config, 1024-d) or ``tiny`` (tests) or a config.json path.
Resize is ``crop * 256 / 224`` as in the V-JEPA 2 video processor; mean/std are ImageNet's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from aamflow.schemas.errors import ConfigError

from ..preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClipTransform,
    PooledEncoder,
    check_precision,
    hf_processor_config,
    prepare_module,
    side_from,
)
from ._base import EncoderIdentity, register_encoder, weights_digest

CONFIGS: dict[str, dict[str, Any]] = {
    "vitl": {},
    "tiny": {
        "crop_size": 32,
        "frames_per_clip": 4,
        "patch_size": 16,
        "tubelet_size": 2,
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "pred_hidden_size": 32,
        "pred_num_hidden_layers": 1,
        "pred_num_attention_heads": 2,
        "num_pooler_layers": 1,
    },
}


class VJEPA2Pooled(torch.nn.Module):
    """V-JEPA 2 encoder + token mean: ``[B, 3, T, S, S] -> [B, D]``."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder(pixel_values_videos=x.transpose(1, 2)).last_hidden_state
        return tokens.mean(dim=1)


def _vjepa2_classes():
    try:
        from transformers import VJEPA2Config, VJEPA2Model
    except ImportError as e:
        raise ConfigError(
            "encoder 'vjepa2' needs transformers with V-JEPA 2 (>= 4.53); "
            f"pip install -U 'aamflow[hf]' ({e})"
        ) from None
    return VJEPA2Config, VJEPA2Model


def _build(weights: str | None, config: str | None, seed: int) -> tuple[VJEPA2Pooled, Any, str]:
    config_cls, model_cls = _vjepa2_classes()
    if (weights is None) == (config is None):
        raise ConfigError(
            "encoder 'vjepa2' needs exactly one of weights= (a local directory or hub id, "
            "e.g. facebook/vjepa2-vitl-fpc64-256) or config= (vitl, tiny or a config.json "
            "path, random weights)"
        )
    if weights is not None:
        try:
            cfg = config_cls.from_pretrained(weights)
            model = model_cls.from_pretrained(weights, dtype=torch.float32)
        except OSError as e:
            raise ConfigError(f"vjepa2 weights {weights!r} cannot be loaded: {e}") from None
        return VJEPA2Pooled(model.encoder), cfg, str(weights)
    if config in CONFIGS:
        cfg = config_cls(**CONFIGS[config])
    elif Path(config).exists():
        cfg = config_cls.from_pretrained(config)
    else:
        raise ConfigError(
            f"vjepa2 config {config!r} is neither a named config "
            f"({', '.join(CONFIGS)}) nor a config.json path"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # random weights, but the same ones (and digest) every run
        module = VJEPA2Pooled(model_cls(cfg).encoder)
    return module, cfg, f"config:{config}"


@register_encoder("vjepa2")
def vjepa2(
    *,
    weights: str | None = None,
    config: str | None = None,
    clip_len: int | None = None,
    crop: int | None = None,
    device: str = "cpu",
    precision: str = "fp32",
    seed: int = 0,
) -> PooledEncoder:
    """A V-JEPA 2 encoder from ``weights`` (directory or hub id) or a random ``config``."""
    check_precision(precision)
    module, cfg, source = _build(weights, config, seed)
    proc = hf_processor_config(weights) if weights is not None else {}
    crop = crop or side_from(proc.get("crop_size"), cfg.crop_size)
    clip_len = clip_len or int(cfg.frames_per_clip)
    if crop % cfg.patch_size or clip_len % cfg.tubelet_size:
        raise ConfigError(
            f"vjepa2: crop {crop} must be a multiple of {cfg.patch_size} and clip_len "
            f"{clip_len} a multiple of {cfg.tubelet_size}"
        )
    transform = ClipTransform(
        resize=int(crop * 256 / 224),
        crop=crop,
        mean=tuple(proc.get("image_mean", IMAGENET_MEAN)),
        std=tuple(proc.get("image_std", IMAGENET_STD)),
    )
    identity = EncoderIdentity(
        name="vjepa2",
        dim=int(cfg.hidden_size),
        weights_digest=weights_digest(module),
        clip_len=clip_len,
        preprocessing={**transform.to_dict(), "pooling": "mean", "source": source},
    )
    return PooledEncoder(
        identity=identity,
        module=prepare_module(module, device),
        transform=transform,
        precision=precision,
    )
