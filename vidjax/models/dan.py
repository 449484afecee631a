"""Dynamic Appearance Net (DAN, thesis section 3.5.3, Fig. 3.11) and its input-representation baselines.

The clip ``(N, S*T, H, W, 3)`` is S segments of T consecutive frames (section 3.6.1: uniform TSN
segments on SS V1 / UCF101 / HMDB51, S*T consecutive frames on Kinetics). A representation module turns
every segment ``(T, H, W, 3)`` into one frame, and the backbone classifies the S frames:

* ``'pwtp'`` (default): Pixel-Wise Temporal Projection -> dynamic appearance (Eq. 3.7-3.12), sows the
  ENoPR ``'enopr'`` (Eq. 3.13) into ``'losses'``. Defaults T = 8 (from the data), D = 1, conv 9x9 s8
  C' = 24 (Table 3.11 row 4), MLP config #7 (Table 3.13).
* Table 3.12 baselines: ``'rgb_diff'`` (TSN RGB difference, the T-1 differences stacked on channels,
  or summed with ``rgb_diff_mode='sum'``), ``'dynamic_image'`` (approximate rank pooling),
  ``'squeezed_image'`` (TSP with D = 1 per segment, sows ``'l_proj'``), ``'rgb'`` (the middle frame of
  each segment: the RGB baseline with the same sampling).

Backbones (``backbone``): ``'tsm_resnet'`` (TSM-ResNet-50 of ``vidjax.backbones.resnet``, the S frames as
its T; ``depth``, ``width``, ``shift``, ``stage_sizes``), ``'x3d_xs'`` / ``'x3d_m'`` (``vidjax.backbones.x3d.X3D`` on the S
frames as a 3D clip; ``width_factor``, ``head_dim_out`` etc. as the ``x3d`` model). The first conv of
every backbone infers its input channels, so the 15-channel RGB-difference stack works unchanged.

Parameter paths: the representation module is ``representation/...`` (the PWTP parameters Theta^1 of
Eq. 3.15: ``representation/conv``, ``representation/mlp_in`` ...), the backbone ``backbone/...`` with
its usual names (``backbone/head/fc``). ``vidjax.train.joint.projection_mask`` selects Theta^1 by that prefix.

``config.model`` fields: ``num_classes``, ``num_segments`` (S; must equal ``config.data.num_segments``,
T is read from the input as F / S = ``config.data.frames_per_segment``), ``representation``,
``backbone``, ``dropout``, ``pwtp`` (ConfigDict of ``PixelWiseTemporalProjection`` fields: ``num_basis`` D,
``conv_setting`` (Table 3.11 row) or ``kernel_size``/``stride``/``channels``, ``mlp_config`` (Table 3.13 #)
or ``mlp_ratio``/``mlp_blocks``/``expansion``, ``gelu_after_block``, ``ridge``, ``solver``; a Table row, when
given, overrides the explicit fields), ``rgb_diff_mode``,
``tsp_activations``.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from vidjax.backbones.resnet import TSMResNet
from vidjax.models.registry import register
from vidjax.modules.projection import (DynamicImage, PixelWiseTemporalProjection, RGBDifference,
                                       TemporalSqueezePooling)

REPRESENTATIONS = ("pwtp", "rgb_diff", "dynamic_image", "squeezed_image", "rgb")
BACKBONES = ("tsm_resnet", "x3d_xs", "x3d_m")


class SqueezedImage(nn.Module):
  """One squeezed image per segment: TSP with D = 1, ``(B, T, H, W, C)`` -> ``(B, H, W, C)``."""
  activations: str = "sigmoid+leaky_relu"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    return TemporalSqueezePooling(1, self.activations, dtype=self.dtype, name="tsp")(x, train)[:, 0]


class MiddleFrame(nn.Module):
  """RGB baseline: the middle frame ``x[:, T // 2]`` of each segment."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    return x[:, x.shape[1] // 2]


class DAN(nn.Module):
  """``(N, S*T, H, W, 3)`` -> representation per segment -> ``(N, S, H, W, C')`` -> backbone logits."""
  representation: nn.Module
  backbone: nn.Module
  num_segments: int

  @nn.compact
  def __call__(self, video, train: bool = False):
    n, f, h, w, c = video.shape
    s = self.num_segments
    if f % s:
      raise ValueError(f"DAN: {f} input frames do not split into num_segments={s}")
    rep = self.representation(video.reshape(n * s, f // s, h, w, c), train=train)
    return self.backbone(rep.reshape((n, s) + rep.shape[1:]), train=train)


def build_representation(cfg, dtype):
  kind = cfg.get("representation", "pwtp")
  if kind == "pwtp":
    p = dict(cfg.get("pwtp", None) or {})
    allowed = {"num_basis", "kernel_size", "stride", "channels", "conv_bias", "mlp_ratio", "mlp_blocks",
               "expansion", "conv_setting", "mlp_config", "gelu_after_block", "ridge", "solver"}
    unknown = set(p) - allowed
    if unknown:
      raise ValueError(f"unknown config.model.pwtp fields {sorted(unknown)}; allowed: {sorted(allowed)}")
    return PixelWiseTemporalProjection(**p, dtype=dtype)
  if kind == "rgb_diff":
    return RGBDifference(cfg.get("rgb_diff_mode", "stack"), dtype=dtype)
  if kind == "dynamic_image":
    return DynamicImage(dtype=dtype)
  if kind == "squeezed_image":
    return SqueezedImage(cfg.get("tsp_activations", "sigmoid+leaky_relu"), dtype=dtype)
  if kind == "rgb":
    return MiddleFrame()
  raise ValueError(f"config.model.representation must be one of {REPRESENTATIONS}, got {kind!r}")


def build_backbone(cfg, dtype):
  kind = cfg.get("backbone", "tsm_resnet")
  if kind == "tsm_resnet":
    return TSMResNet(
        num_classes=cfg.num_classes, depth=cfg.get("depth", 50), width=cfg.get("width", 1.0),
        stage_sizes=tuple(cfg.stage_sizes) if cfg.get("stage_sizes") else None,
        shift_div=cfg.get("shift_div", 8) if cfg.get("shift", True) else 0, dropout=cfg.get("dropout", 0.5),
        dtype=dtype)
  if kind in ("x3d_xs", "x3d_m"):
    try:
      from vidjax.backbones.x3d import X3D
    except ModuleNotFoundError as e:  # the X3D backbone is written separately
      raise ValueError(f"DAN backbone {kind!r} needs vidjax/backbones/x3d.py") from e
    return X3D(num_classes=cfg.num_classes, variant=kind.split("_")[1], dropout=cfg.get("dropout", 0.5),
               width_factor=cfg.get("width_factor", 2.0), depth_factor=cfg.get("depth_factor", None),
               bottleneck_factor=cfg.get("bottleneck_factor", 2.25),
               head_dim_out=cfg.get("head_dim_out", 2048), dtype=dtype)
  raise ValueError(f"config.model.backbone must be one of {BACKBONES}, got {kind!r}")


@register("dan")
def dan(cfg, dtype=jnp.float32):
  return DAN(build_representation(cfg, dtype), build_backbone(cfg, dtype), cfg.get("num_segments", 8))
