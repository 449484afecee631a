"""Temporal Squeeze Network (TeSNet, thesis section 3.2.3, Fig. 3.3 / 3.4, Table 3.2).

A 2D CNN with Temporal Squeeze Pooling layers (``vidjax.modules.projection.TemporalSqueezePooling``):
(a) one TSP right after the input (K frames -> D squeezed images, the default: K = 10, D = 3, section
3.3.1), or (b) several TSPs inside the backbone at configurable depths, each with its own D (Table 3.2).
The backbone sees the squeezed images as a batch of frames (frames folded into the batch) and the logits
of the final frames are averaged (segment consensus). Loss (Eq. 3.6): ``l_cls + beta sum_i l_proj^i``
(beta = 10, section 3.3.1); every TSP sows its ``'l_proj'`` into ``'losses'`` and the train step combines
them (``vidjax.train.joint``, strategy ``'weighted'``).

Backbones: ``'inception_resnet_v2'`` (the thesis' own backbone, insert points
``vidjax.backbones.inception_resnet_v2.INSERT_POINTS``: Table 3.2's "Conv2d_1a_3x3", "Conv2d_4a_3x3",
"Block A", "Block B" are ``conv2d_1a``, ``conv2d_4a``, ``block_a``, ``block_b``) and ``'resnet50'`` (TSN
ResNet-50 built from ``vidjax.backbones.resnet`` blocks, insert points ``input``, ``stem`` (after the
max-pool), ``layer1`` .. ``layer4`` (after each stage); ``shift=True`` adds the TSM shift).

Two-stream (Fig. 3.4): ``modality='rgb+flow'`` builds an RGB TeSNet (``rgb_stream``) and an optical-flow
TeSNet (``flow_stream``) and averages their scores. Input: the RGB clip and the flow clip concatenated on
the channel axis, ``(N, F, H, W, 3 + 2)`` (flow = the x and y TV-L1 fields, read as two grey JPEGs per
frame in the rawframes layout and normalised by the pipeline). ``fusion='logits'`` (default, the score
average of the reference's test protocol) averages the logits; ``'softmax'`` returns
``log(mean softmax)`` (a valid logit vector whose softmax is the averaged probability).
``modality='flow'`` is the temporal stream alone on ``(N, F, H, W, 2)``.

``config.model`` fields: ``num_classes``, ``backbone`` ('inception_resnet_v2' | 'resnet50'),
``dropout`` (0.5), ``tsp_layers`` (tuple of ``"point:D"`` strings, default ``("input:3",)``) or
``tsp_setting`` (Table 3.2 row 1-5, overrides ``tsp_layers``), ``tsp_activations``
('sigmoid+leaky_relu', Table 3.1), ``tsp_bias`` (True), ``tsp_ridge`` (0), ``tsp_solver`` ('cholesky'),
``num_segments`` (1: the F input frames are one clip of K frames; S > 1 splits them into S clips of F/S
frames (section 3.4's remedy), each squeezed on its own, logits averaged over S), ``modality`` ('rgb' |
'flow' | 'rgb+flow'), ``fusion``, ``block_repeats`` (Inception-ResNet-v2 (10, 20, 9); fewer for tests),
``width`` / ``depth`` / ``shift`` / ``stage_sizes`` (ResNet).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vidjax.backbones.inception_resnet_v2 import INSERT_POINTS as IRV2_POINTS
from vidjax.backbones.inception_resnet_v2 import InceptionResNetV2
from vidjax.backbones.layers import Classifier, max_pool_3x3_s2, segment_consensus
from vidjax.backbones.resnet import Bottleneck, ResNetStem, stage_layout
from vidjax.models.registry import register
from vidjax.modules.projection import TemporalSqueezePooling

# Table 3.2: TSP locations and D per setting (Inception-ResNet-v2).
TABLE_3_2 = {
    1: ("input:3",),
    2: ("input:1",),
    3: ("conv2d_1a:3", "conv2d_4a:1"),
    4: ("conv2d_1a:3", "block_a:1"),
    5: ("conv2d_1a:3", "block_b:1"),
}
RESNET_POINTS = ("input", "stem", "layer1", "layer2", "layer3", "layer4")


class TSPLayer(nn.Module):
  """TSP on frames-as-batch features: ``(N*K, H, W, C)`` -> ``(N*D, H, W, C)`` (an insert hook)."""
  num_squeezed: int
  activations: str = "sigmoid+leaky_relu"
  use_bias: bool = False
  ridge: float = 0.0
  solver: str = "cholesky"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, num_frames: int, train: bool = False):
    nk, h, w, c = x.shape
    y = TemporalSqueezePooling(self.num_squeezed, self.activations, self.use_bias, self.ridge, self.solver,
                               dtype=self.dtype, name="tsp")(x.reshape(nk // num_frames, num_frames, h, w, c),
                                                             train)
    return y.reshape(-1, h, w, c)


class ResNetTeS(nn.Module):
  """TSN ResNet-50 (optionally TSM) with insert hooks at stage boundaries; frames may change at a hook.

  Parameter names as ``vidjax.backbones.resnet.TSMResNet`` (``stem/conv1``, ``layer{s}_{b}``, ``head/fc``).
  """
  num_classes: int
  depth: int = 50
  width: float = 1.0
  shift_div: int = 0
  dropout: float = 0.5
  insert: Sequence[tuple[str, Any]] = ()
  stage_sizes: Optional[Sequence[int]] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, video, train: bool = False):
    n, t, h, w, c = video.shape
    hooks = dict(self.insert)
    unknown = set(hooks) - set(RESNET_POINTS)
    if unknown:
      raise ValueError(f"unknown insert points {sorted(unknown)}; choose from {RESNET_POINTS}")

    def point(name, x):
      if name in hooks:
        x = hooks[name](x.shape[-1], f"{name}_insert")(x, num_frames=x.shape[0] // n, train=train)
      return x

    x = point("input", video.reshape(n * t, h, w, c).astype(self.dtype))
    x = ResNetStem(self.width, dtype=self.dtype, name="stem")(x, train)
    x = point("stem", max_pool_3x3_s2(x))
    last_stage = 1
    for s, b, planes, stride, down in stage_layout(self.depth, self.width, self.stage_sizes):
      if s != last_stage:
        x = point(f"layer{last_stage}", x)
        last_stage = s
      x = Bottleneck(planes, stride, x.shape[0] // n, self.shift_div, down, dtype=self.dtype,
                     name=f"layer{s}_{b}")(x, train)
    x = point("layer4", x)
    x = jnp.mean(x, axis=(1, 2))
    logits = Classifier(self.num_classes, self.dropout, dtype=self.dtype, name="head")(x, train)
    return segment_consensus(logits.astype(jnp.float32), logits.shape[0] // n)


class TeSNet(nn.Module):
  """One stream: ``(N, S*K, H, W, C)`` -> ``(N, num_classes)``; the backbone holds the TSP hooks."""
  backbone: nn.Module
  num_segments: int = 1

  @nn.compact
  def __call__(self, video, train: bool = False):
    n, f, h, w, c = video.shape
    s = self.num_segments
    if f % s:
      raise ValueError(f"TeSNet: {f} frames do not split into num_segments={s}")
    logits = self.backbone(video.reshape(n * s, f // s, h, w, c), train=train)
    return logits.reshape(n, s, -1).mean(axis=1)


class TwoStream(nn.Module):
  """Fig. 3.4: RGB and optical-flow streams on ``(N, F, H, W, 3 + 2)``, scores averaged."""
  rgb_stream: nn.Module
  flow_stream: nn.Module
  fusion: str = "logits"

  @nn.compact
  def __call__(self, video, train: bool = False):
    if video.shape[-1] != 5:
      raise ValueError(f"two-stream TeSNet expects RGB (3) + flow x/y (2) channels, got {video.shape[-1]}")
    a = self.rgb_stream(video[..., :3], train=train)
    b = self.flow_stream(video[..., 3:], train=train)
    if self.fusion == "logits":
      return (a + b) / 2
    if self.fusion == "softmax":
      return jnp.log((jax.nn.softmax(a) + jax.nn.softmax(b)) / 2)
    raise ValueError(f"fusion must be 'logits' or 'softmax', got {self.fusion!r}")


def parse_tsp_layers(spec: Sequence[str]) -> list[tuple[str, int]]:
  """``("conv2d_1a:3", "block_b:1")`` -> ``[("conv2d_1a", 3), ("block_b", 1)]``."""
  out = []
  for item in spec:
    point, _, d = str(item).partition(":")
    if not d:
      raise ValueError(f"tsp layer {item!r} must read 'point:D'")
    out.append((point.strip(), int(d)))
  return out


def _stream(cfg, dtype, tsp_layers):
  def factory(d):
    return lambda channels, name: TSPLayer(d, cfg.get("tsp_activations", "sigmoid+leaky_relu"),
                                           cfg.get("tsp_bias", True), cfg.get("tsp_ridge", 0.0),
                                           cfg.get("tsp_solver", "cholesky"), dtype=dtype, name=name)
  insert = tuple((p, factory(d)) for p, d in tsp_layers)
  backbone = cfg.get("backbone", "inception_resnet_v2")
  if backbone == "inception_resnet_v2":
    bad = [p for p, _ in tsp_layers if p not in IRV2_POINTS]
    if bad:
      raise ValueError(f"TSP points {bad} not in {IRV2_POINTS}")
    net = InceptionResNetV2(cfg.num_classes, cfg.get("dropout", 0.5),
                            tuple(cfg.get("block_repeats", (10, 20, 9))), insert, dtype=dtype)
  elif backbone == "resnet50":
    net = ResNetTeS(cfg.num_classes, cfg.get("depth", 50), cfg.get("width", 1.0),
                    cfg.get("shift_div", 8) if cfg.get("shift", False) else 0, cfg.get("dropout", 0.5),
                    insert, tuple(cfg.stage_sizes) if cfg.get("stage_sizes") else None, dtype=dtype)
  else:
    raise ValueError(f"TeSNet backbone must be 'inception_resnet_v2' or 'resnet50', got {backbone!r}")
  return net


@register("tesnet")
def tesnet(cfg, dtype=jnp.float32):
  setting: Optional[int] = cfg.get("tsp_setting", None)
  tsp_layers = parse_tsp_layers(TABLE_3_2[setting] if setting else cfg.get("tsp_layers", ("input:3",)))
  s = cfg.get("num_segments", 1)
  modality = cfg.get("modality", "rgb")
  if modality in ("rgb", "flow"):
    return TeSNet(_stream(cfg, dtype, tsp_layers), s)
  if modality == "rgb+flow":
    return TwoStream(TeSNet(_stream(cfg, dtype, tsp_layers), s),
                     TeSNet(_stream(cfg, dtype, tsp_layers), s),
                     cfg.get("fusion", "logits"))
  raise ValueError(f"config.model.modality must be 'rgb', 'flow' or 'rgb+flow', got {modality!r}")
