"""HF and torchvision encoder families with tiny random weights: the Encoder contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from aamflow.schemas.errors import ConfigError
from aamflow.stages.extract.encoders import create_encoder, encoder_names
from aamflow.stages.extract.preprocess import ClipTransform, autocast

pytest.importorskip("transformers")


def _torchvision_ok() -> bool:
    try:
        import torchvision.models.video  # noqa: F401
    except Exception:  # missing, or a wheel built for another torch
        return False
    return True


# name -> (options for a tiny model, expected pooling)
TINY = {
    "videomae": ({"config": "tiny"}, "mean"),
    "vjepa2": ({"config": "tiny"}, "mean"),
    "torchvision:r3d_18": ({"clip_len": 4}, "penultimate"),
}
needs_tv = pytest.mark.skipif(not _torchvision_ok(), reason="torchvision cannot import here")
FAMILIES = [
    "videomae",
    "vjepa2",
    pytest.param("torchvision:r3d_18", marks=needs_tv),
]


def test_families_are_registered() -> None:
    assert {"videomae", "vjepa2", "torchvision"} <= set(encoder_names())


@pytest.mark.parametrize("name", FAMILIES)
def test_encoder_contract(name: str) -> None:
    options, pooling = TINY[name]
    enc = create_encoder(name, **options)
    ident = enc.identity
    t = ident.clip_len
    frames = np.random.default_rng(0).integers(0, 256, (t, 40, 56, 3), dtype=np.uint8)
    x = enc.preprocess(frames)
    s = ident.preprocessing["crop"]
    assert x.shape == (3, t, s, s) and x.dtype == torch.float32
    batch = torch.stack([x, x.flip(-1), x])
    out = enc.encode(batch)
    assert out.shape == (3, ident.dim) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0], out[2])  # per-clip, not batch-dependent
    assert not torch.equal(out[0], out[1])
    assert ident.name == name
    assert ident.weights_digest.startswith("sha256:") and len(ident.weights_digest) == 71
    assert ident.preprocessing["pooling"] == pooling
    assert {"resize_short", "crop", "mean", "std"} <= set(ident.preprocessing)
    json.dumps(ident.to_dict())  # stores write it as attributes
    # the same options give the same weights (seeded random init)
    assert create_encoder(name, **options).identity.weights_digest == ident.weights_digest
    # precision is an autocast on CUDA only: on CPU bf16 runs fp32 and returns float32
    bf16 = create_encoder(name, **options, precision="bf16").encode(batch)
    assert bf16.dtype == torch.float32


def test_videomae_classification_checkpoint_uses_fc_norm(tmp_path: Path) -> None:
    """A fine-tuned (mean pooling) checkpoint: feature = fc_norm(mean of tokens)."""
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification

    from aamflow.stages.extract.encoders.videomae import CONFIGS

    cfg = VideoMAEConfig(**CONFIGS["tiny"], num_labels=5)
    torch.manual_seed(1)
    clf = VideoMAEForVideoClassification(cfg).eval()
    with torch.no_grad():
        clf.fc_norm.weight.uniform_(0.5, 1.5)  # not the identity init, so fc_norm matters
    clf.save_pretrained(tmp_path)
    proc = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25]}
    proc |= {"size": {"shortest_edge": 36}, "crop_size": {"height": 32, "width": 32}}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(proc))

    enc = create_encoder("videomae", weights=str(tmp_path))
    pre = enc.identity.preprocessing
    assert pre["pooling"] == "mean+fc_norm" and pre["source"] == str(tmp_path)
    assert (pre["resize_short"], pre["crop"], pre["mean"]) == (36, 32, [0.5, 0.5, 0.5])
    assert enc.identity.dim == 32 and enc.identity.clip_len == 4
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        tokens = clf.videomae(pixel_values=x.transpose(1, 2)).last_hidden_state
        expected = clf.fc_norm(tokens.mean(1))
    torch.testing.assert_close(enc.encode(x), expected)


def test_videomae_pretraining_style_model_is_plain_mean(tmp_path: Path) -> None:
    from transformers import VideoMAEConfig, VideoMAEModel

    from aamflow.stages.extract.encoders.videomae import CONFIGS

    model = VideoMAEModel(VideoMAEConfig(**CONFIGS["tiny"])).eval()
    model.save_pretrained(tmp_path)
    enc = create_encoder("videomae", weights=str(tmp_path))
    assert enc.identity.preprocessing["pooling"] == "mean"
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        expected = model(pixel_values=x.transpose(1, 2)).last_hidden_state.mean(1)
    torch.testing.assert_close(enc.encode(x), expected)


def test_vjepa2_from_a_directory_and_frame_count_option(tmp_path: Path) -> None:
    from transformers import VJEPA2Config, VJEPA2Model

    from aamflow.stages.extract.encoders.vjepa2 import CONFIGS

    VJEPA2Model(VJEPA2Config(**CONFIGS["tiny"])).save_pretrained(tmp_path)
    enc = create_encoder("vjepa2", weights=str(tmp_path), clip_len=8)
    assert enc.identity.clip_len == 8 and enc.identity.dim == 32
    assert enc.identity.preprocessing["resize_short"] == int(32 * 256 / 224)
    assert enc.encode(torch.randn(2, 3, 8, 32, 32)).shape == (2, 32)


@pytest.mark.parametrize("family", ["videomae", "vjepa2"])
def test_hf_option_errors(family: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exactly one of weights="):
        create_encoder(family)
    with pytest.raises(ConfigError, match="exactly one of weights="):
        create_encoder(family, weights="x", config="tiny")
    with pytest.raises(ConfigError, match="neither a named config"):
        create_encoder(family, config="huge")
    with pytest.raises(ConfigError, match="cannot be loaded"):
        create_encoder(family, weights=str(tmp_path / "no-such-model"))
    with pytest.raises(ConfigError, match="precision"):
        create_encoder(family, config="tiny", precision="int8")


@pytest.mark.skipif(_torchvision_ok(), reason="torchvision imports here")
def test_torchvision_missing_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="torchvision"):
        create_encoder("torchvision:r3d_18")


def test_torchvision_unknown_arch() -> None:
    with pytest.raises(ConfigError, match="valid: mc3_18, mvit_v2_s"):
        create_encoder("torchvision:resnet50")


@needs_tv
def test_torchvision_loads_a_local_state_dict(tmp_path: Path) -> None:
    from torchvision.models.video import r3d_18

    model = r3d_18(num_classes=7).eval()
    torch.save(model.state_dict(), tmp_path / "r3d.pth")
    enc = create_encoder("torchvision:r3d_18", weights=str(tmp_path / "r3d.pth"))
    x = torch.randn(2, 3, 4, 32, 32)
    model.fc = torch.nn.Identity()
    with torch.no_grad():
        torch.testing.assert_close(enc.encode(x), model(x))
    assert enc.identity.dim == 512


def test_clip_transform_resizes_short_side_and_crops() -> None:
    tf = ClipTransform(resize=16, crop=12, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    frames = np.zeros((2, 32, 64, 3), dtype=np.uint8)
    frames[:, :, 32:] = 255  # right half white: after a 16x32 resize the crop spans the edge
    x = tf(frames)
    assert x.shape == (3, 2, 12, 12)
    assert x[:, :, :, 0].max() < 0.05 and x[:, :, :, -1].min() > 0.95
    assert tf(frames[:1]).shape == (3, 1, 12, 12)  # frame-wise: T is free
    torch.testing.assert_close(tf(frames)[:, :1], tf(frames[:1]))


def test_autocast_is_a_no_op_on_cpu() -> None:
    with autocast("cpu", "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with pytest.raises(ConfigError):
        autocast("cpu", "fp8")
