"""VideoMAE (HF transformers) clip encoder: one pooled vector per clip.

``create_encoder("videomae", weights=...)`` loads a local directory or a hub id (online, or
cached); a ``VideoMAEForVideoClassification`` checkpoint keeps its ``fc_norm``. Pooling is
the paper's: mean of the last hidden state's tokens, then ``fc_norm`` when the checkpoint
has one (mean-pooling fine-tuned models). ``config=`` builds random weights instead:
``base`` (ViT-B, 768-d, 16 frames, 224 px), ``tiny`` (for tests) or a config.json path.
Mean, std and sizes come from the checkpoint's image processor config.
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

# named configs for random initialisation (keyword overrides of VideoMAEConfig)
CONFIGS: dict[str, dict[str, Any]] = {
    "base": {},
    "tiny": {
        "image_size": 32,
        "patch_size": 16,
        "num_frames": 4,
        "tubelet_size": 2,
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "use_mean_pooling": True,
    },
}


class VideoMAEPooled(torch.nn.Module):
    """VideoMAE backbone + token mean (+ fc_norm): ``[B, 3, T, S, S] -> [B, D]``."""

    def __init__(self, backbone: torch.nn.Module, fc_norm: torch.nn.Module | None) -> None:
        super().__init__()
        self.backbone = backbone
        self.fc_norm = fc_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.backbone(pixel_values=x.transpose(1, 2)).last_hidden_state
        pooled = tokens.mean(dim=1)
        return self.fc_norm(pooled) if self.fc_norm is not None else pooled


def _transformers():
    try:
        import transformers
    except ImportError:
        raise ConfigError(
            "encoder 'videomae' needs transformers; pip install 'aamflow[hf]'"
        ) from None
    return transformers


def _build(weights: str | None, config: str | None, seed: int) -> tuple[VideoMAEPooled, Any, str]:
    tf = _transformers()
    if (weights is None) == (config is None):
        raise ConfigError(
            "encoder 'videomae' needs exactly one of weights= (a local directory or hub id, "
            "e.g. MCG-NJU/videomae-base-finetuned-kinetics) or config= (base, tiny or a "
            "config.json path, random weights)"
        )
    if weights is not None:
        try:
            cfg = tf.VideoMAEConfig.from_pretrained(weights)
            if "VideoMAEForVideoClassification" in (cfg.architectures or []):
                clf = tf.VideoMAEForVideoClassification.from_pretrained(
                    weights, dtype=torch.float32
                )
                module = VideoMAEPooled(clf.videomae, clf.fc_norm)
            else:
                module = VideoMAEPooled(
                    tf.VideoMAEModel.from_pretrained(weights, dtype=torch.float32), None
                )
        except OSError as e:
            raise ConfigError(f"videomae weights {weights!r} cannot be loaded: {e}") from None
        return module, cfg, str(weights)
    if config in CONFIGS:
        cfg = tf.VideoMAEConfig(**CONFIGS[config])
    elif Path(config).exists():
        cfg = tf.VideoMAEConfig.from_pretrained(config)
    else:
        raise ConfigError(
            f"videomae config {config!r} is neither a named config "
            f"({', '.join(CONFIGS)}) nor a config.json path"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # random weights, but the same ones (and digest) every run
        module = VideoMAEPooled(tf.VideoMAEModel(cfg), None)
    return module, cfg, f"config:{config}"


@register_encoder("videomae")
def videomae(
    *,
    weights: str | None = None,
    config: str | None = None,
    device: str = "cpu",
    precision: str = "fp32",
    seed: int = 0,
) -> PooledEncoder:
    """A VideoMAE encoder from ``weights`` (directory or hub id) or a random ``config``."""
    check_precision(precision)
    module, cfg, source = _build(weights, config, seed)
    proc = hf_processor_config(weights) if weights is not None else {}
    crop = side_from(proc.get("crop_size"), cfg.image_size)
    if crop != cfg.image_size:
        raise ConfigError(
            f"videomae {source}: processor crop {crop} != model image_size {cfg.image_size}"
        )
    transform = ClipTransform(
        resize=side_from(proc.get("size"), cfg.image_size),
        crop=crop,
        mean=tuple(proc.get("image_mean", IMAGENET_MEAN)),
        std=tuple(proc.get("image_std", IMAGENET_STD)),
    )
    pooling = "mean+fc_norm" if module.fc_norm is not None else "mean"
    digest = weights_digest(module)
    identity = EncoderIdentity(
        name="videomae",
        dim=int(cfg.hidden_size),
        weights_digest=digest,
        clip_len=int(cfg.num_frames),
        preprocessing={**transform.to_dict(), "pooling": pooling, "source": source},
    )
    return PooledEncoder(
        identity=identity,
        module=prepare_module(module, device),
        transform=transform,
        precision=precision,
    )
