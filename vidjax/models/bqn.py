"""Busy-only MBPM models and the Busy-Quiet Net (thesis chapter 5, REFERENCE.md sections 7 and 9).

Registered models (``config.model.name``); the input is ``(N, 3T, H, W, 3)``: T segments of 3
consecutive frames (``config.data.frames_per_segment = 3``).

``busy_tsm_resnet`` (Tables 5.1, 5.2 "MBPM" rows; reference ``ops/models.py`` with ``modality='HP'``):
  the stem MBPM (sigma 1.1, k 9, stride 3 over each triplet) turns the 3T frames into T Busy frames that
  feed a TSM-ResNet unchanged (same parameter names as ``tsm_resnet`` plus ``mbpm/``). Fields: those of
  ``tsm_resnet`` plus ``mbpm_sigma``, ``mbpm_kernel_size``, ``mbpm_trainable`` (False: Fig. 5.3's
  untrained MBPM).

``bqn_resnet`` (section 5.4; default = reference ``src/bqn_resnet_reverse.py``, the model whose numbers
the thesis reports: BQN TSM-R50, 24 frames, Quiet 160^2 / Busy 256^2, 174 classes -> 47.68M parameters,
59.4 GMACs conv/linear; thesis 47.4M / 60G, REFERENCE.md section 13):

* Busy input: stem MBPM of the full-resolution triplets (``busy_mbpm``). Quiet input
  (``quiet_input``): ``'first_frame'`` (default, the code: first frame of every triplet) or ``'eq5.4'``
  (thesis Eq. 5.4: ``Avg3(I) - Gamma``); then bilinear resizing without antialiasing to ``quiet_size``
  (160; or ``quiet_scale`` x the Busy size when ``quiet_size`` is unset) and, when ``quiet_frames`` is
  set, linearly in time to that many frames (Table 5.8's "160^2 x 6", "224^2 x 4").
* Two stems (``quiet_stem``, ``busy_stem``: conv 7x7/2 + BN + ReLU, each followed by max-pool 3/2) and
  two TSM-ResNet pathways with no shared weights: block ``layer{s}_{b}`` holds ``quiet`` and ``busy``
  bottlenecks and, where placed, the lateral connection ``lc``
  (``vidjax.modules.bandpass.BandPassLateralConnection``). Blocks are numbered 1..B globally
  (B = 16 for R50); the BPLC direction alternates with that number (Eq. 5.5; odd Busy -> Quiet, even
  Quiet -> Busy through an MBPM with sigma ``lc_sigma`` = 0.9 and k ``lc_kernel_sizes`` = 7, 7, 7, 3 per
  stage). The reference counts blocks with a class-level counter that keeps counting across model
  instances (REFERENCE.md section 12.10); here the numbering always starts at 1.
* Head (``fusion``, Table 5.4): ``'avg_after_fc'`` (default, code: one shared ``fc`` on both pathways'
  pooled features, logits averaged), ``'avg_before_fc'``, ``'max_after_fc'``, ``'concat_before_fc'``
  (``fc`` on the 2C concatenation). Dropout precedes the fc. Logits are averaged over the T segments.
  With equal frame counts the fusion is per frame, then the segment average (as the code); with
  ``quiet_frames`` != T each pathway is first averaged over its frames.

Ablation fields of section 5.5.3:
  ``lc_blocks`` ('all' = 16 BPLCs | 'first' = one after the first block of each stage (Table 5.5) |
  'none' | a tuple of global 1-based block indices, e.g. Table 5.6's 8, whose placement the thesis does not
  give), ``lc_stages`` (stages 1..4 = res2..res5 that may hold LCs, Table 5.5), ``lc_design`` (LC-I..LC-V of
  Table 5.7; 'IV' = BPLC), ``lc_phi`` / ``lc_w1`` / ``lc_phi_bottleneck`` (Eq. 5.5's phi as a 1x1 conv or
  bottleneck MLP; W_1 on the Quiet -> Busy path), ``lc_bn_zero_init``, ``lc_mbpm_trainable``,
  ``fusion`` (Table 5.4), ``quiet_size`` / ``quiet_frames`` and the crop size (Table 5.8),
  ``quiet_input`` (Eq. 5.4), ``stem_mbpm_trainable`` (Fig. 5.3).

Differences from the reference that do not change the numbers: the Quiet/LC resizes are size-based
(bit-identical to the reference's scale-factor ``nn.Upsample`` for the 256/160 sizes, REFERENCE.md
section 1); everything else (TSM shift in every bottleneck, own downsample convs per pathway, LC BN
zero-init, kaiming fan-out convs, fc N(0, 0.001)) follows ``src/bqn_resnet_reverse.py``.
The reference's ``src/model.py`` imports ``src/bqn_resnet.py`` instead (no Quiet down-sampling, LC-III with
1x1 convs in every block, 88.2M / 154 GMACs): ``quiet_size=<crop>, lc_design='III', lc_phi=True,
lc_w1=True`` builds that network.

``bqn_x3d`` (Tables 5.9, 5.10 "BQN X3D-M"; reference ``src/bqn_x3d_reverse.py``, REFERENCE.md section 8):
the same inputs and ablation fields on two X3D pathways (``vidjax.backbones.x3d``), 26 alternating
connections with 1x1 convs and BN gamma 1 at init, one X3D head per pathway; see ``BusyQuietX3D``.
48 frames, Quiet 160^2 / Busy 256^2, 174 classes: 7.08M params, 9.28 GMACs conv/linear.

Parity with the reference on converted weights (tests/parity/README.md): MBPM, one block of each
direction, BQN TSM-R50 and BQN X3D-M agree to <= 5e-6 relative.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from vidjax.backbones.layers import Classifier, max_pool_3x3_s2
from vidjax.backbones.resnet import Bottleneck, ResNetStem, TSMResNet, stage_layout
from vidjax.models.registry import register
from vidjax.modules.bandpass import (BandPassLateralConnection, MotionBandPass,
                                     normalize_lc_design)

FUSIONS = ("avg_after_fc", "avg_before_fc", "max_after_fc", "concat_before_fc")
QUIET_INPUTS = ("first_frame", "eq5.4")


class BusyTSMResNet(TSMResNet):
  """MBPM stem (three_steps) + TSM-ResNet on ``(N, 3T, H, W, 3)`` clips (Tables 5.1, 5.2)."""
  mbpm_sigma: float = 1.1
  mbpm_kernel_size: int = 9
  mbpm_trainable: bool = True

  @nn.compact
  def __call__(self, video, train: bool = False, return_features: bool = False):
    x = MotionBandPass(self.mbpm_sigma, self.mbpm_kernel_size, three_steps=True,
                       trainable=self.mbpm_trainable, dtype=self.dtype, name="mbpm")(video)
    return super().__call__(x, train, return_features)


def lc_block_indices(lc_blocks: Union[str, Sequence[int], None], lc_stages: Sequence[int],
                     layout: Sequence[tuple]) -> frozenset:
  """Global 1-based indices of the blocks followed by a lateral connection.

  ``layout``: the ``(stage, block, ...)`` tuples of ``stage_layout`` in order.
  """
  stages = set(int(s) for s in lc_stages)
  if lc_blocks is None or (isinstance(lc_blocks, str) and lc_blocks.lower() == "none"):
    return frozenset()
  if isinstance(lc_blocks, str):
    mode = lc_blocks.lower()
    if mode not in ("all", "first"):
      raise ValueError(f"lc_blocks must be 'all', 'first', 'none' or block indices, got {lc_blocks!r}")
    return frozenset(i for i, (s, b, *_) in enumerate(layout, 1)
                     if s in stages and (mode == "all" or b == 0))
  chosen = frozenset(int(i) for i in lc_blocks)
  if chosen and (min(chosen) < 1 or max(chosen) > len(layout)):
    raise ValueError(f"lc_blocks indices must be in 1..{len(layout)}, got {sorted(chosen)}")
  return frozenset(i for i in chosen if layout[i - 1][0] in stages)


class DuoBlock(nn.Module):
  """One residual block of each pathway (``quiet``, ``busy``) and an optional lateral connection."""
  planes: int
  stride: int
  downsample: bool
  quiet_frames: int
  busy_frames: int
  shift_div: int
  block_index: int
  lateral: bool
  lc_design: str = "IV"
  lc_sigma: float = 0.9
  lc_kernel_size: int = 7
  lc_phi: bool = False
  lc_w1: bool = False
  lc_phi_bottleneck: int = 0
  lc_bn_zero_init: bool = True
  lc_mbpm_trainable: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_c, x_f, train: bool = False):
    x_c = Bottleneck(self.planes, self.stride, self.quiet_frames, self.shift_div, self.downsample,
                     dtype=self.dtype, name="quiet")(x_c, train)
    x_f = Bottleneck(self.planes, self.stride, self.busy_frames, self.shift_div, self.downsample,
                     dtype=self.dtype, name="busy")(x_f, train)
    if self.lateral:
      x_c, x_f = BandPassLateralConnection(
          self.block_index, self.quiet_frames, self.busy_frames, self.lc_design, self.lc_sigma,
          self.lc_kernel_size, self.lc_phi, self.lc_w1, self.lc_phi_bottleneck, self.lc_bn_zero_init,
          self.lc_mbpm_trainable, dtype=self.dtype, name="lc")(x_c, x_f, train)
    return x_c, x_f


def _resize_clip(x, frames: int, size: tuple[int, int]):
  """Bilinear (no antialias) resize of ``(N, T, H, W, C)`` to ``(N, frames, *size, C)``."""
  n, t, h, w, c = x.shape
  if (t, h, w) == (frames, *size):
    return x
  if t == frames:
    y = jax.image.resize(x.reshape(n * t, h, w, c), (n * t, *size, c), "bilinear", antialias=False)
    return y.reshape(n, t, *size, c)
  return jax.image.resize(x, (n, frames, *size, c), "linear", antialias=False)


def busy_quiet_inputs(module, video):
  """The two pathway inputs of BQN (sections 5.4.1, 5.4.2), shared by the R50 and X3D models.

  Called from the ``__call__`` of ``module`` (which has the ``stem_*`` / ``quiet_*`` fields); creates
  the stem MBPM submodule ``busy_mbpm``. Returns ``n, t, tq, (qh, qw), busy (N, T, H, W, 3),
  quiet (N, Tq, qh, qw, 3)``.
  """
  if module.quiet_input not in QUIET_INPUTS:
    raise ValueError(f"quiet_input must be one of {QUIET_INPUTS}, got {module.quiet_input!r}")
  n, f, h, w, c = video.shape
  if f % 3:
    raise ValueError(f"BQN takes 3 frames per segment; got {f} frames")
  t = f // 3
  video = video.astype(module.dtype)
  # Busy input: the stem MBPM, one frame per triplet, full resolution (section 5.4.1).
  busy = MotionBandPass(module.stem_sigma, module.stem_kernel_size, three_steps=True,
                        trainable=module.stem_mbpm_trainable, dtype=module.dtype, name="busy_mbpm")(video)
  # Quiet input (section 5.4.2 / code).
  if module.quiet_input == "first_frame":
    quiet = video[:, 0::3]
  else:  # Eq. 5.4: Avg3(I) - Gamma, before the 2D down-sampling
    quiet = video.reshape(n, t, 3, h, w, c).mean(axis=2) - busy
  if module.quiet_size:
    qsize = (int(module.quiet_size), int(module.quiet_size))
  else:
    qsize = (int(h * module.quiet_scale), int(w * module.quiet_scale))
  tq = int(module.quiet_frames or t)
  return n, t, tq, qsize, busy, _resize_clip(quiet, tq, qsize)


class BusyQuietResNet(nn.Module):
  """BQN with two TSM-ResNet pathways (see the module docstring for every field)."""
  num_classes: int
  depth: int = 50
  width: float = 1.0
  stage_sizes: Optional[Sequence[int]] = None
  shift_div: int = 8
  dropout: float = 0.5
  quiet_size: Optional[int] = None
  quiet_scale: float = 160.0 / 256.0
  quiet_frames: Optional[int] = None
  quiet_input: str = "first_frame"
  stem_sigma: float = 1.1
  stem_kernel_size: int = 9
  stem_mbpm_trainable: bool = True
  lc_design: str = "IV"
  lc_blocks: Union[str, Sequence[int], None] = "all"
  lc_stages: Sequence[int] = (1, 2, 3, 4)
  lc_sigma: float = 0.9
  lc_kernel_sizes: Sequence[int] = (7, 7, 7, 3)
  lc_phi: bool = False
  lc_w1: bool = False
  lc_phi_bottleneck: int = 0
  lc_bn_zero_init: bool = True
  lc_mbpm_trainable: bool = True
  fusion: str = "avg_after_fc"
  dtype: Any = jnp.float32
  remat: bool = False  # recompute each duo block in the backward pass (memory for compute)

  def layout(self):
    return list(stage_layout(self.depth, self.width, self.stage_sizes))

  def lateral_blocks(self) -> frozenset:
    return lc_block_indices(self.lc_blocks, self.lc_stages, self.layout())

  @nn.compact
  def __call__(self, video, train: bool = False):
    if self.fusion not in FUSIONS:
      raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
    normalize_lc_design(self.lc_design)
    n, t, tq, qsize, busy, quiet = busy_quiet_inputs(self, video)
    h, w, c = busy.shape[2:]
    x_c = quiet.reshape(n * tq, *qsize, c)
    x_f = busy.reshape(n * t, h, w, c)
    x_c = max_pool_3x3_s2(ResNetStem(self.width, dtype=self.dtype, name="quiet_stem")(x_c, train))
    x_f = max_pool_3x3_s2(ResNetStem(self.width, dtype=self.dtype, name="busy_stem")(x_f, train))

    lateral = self.lateral_blocks()
    duo = nn.remat(DuoBlock, static_argnums=(3,)) if self.remat else DuoBlock  # (self, x_c, x_f, train)
    for i, (s, b, planes, stride, down) in enumerate(self.layout(), 1):
      x_c, x_f = duo(
          planes, stride, down, tq, t, self.shift_div, i, i in lateral, self.lc_design,
          self.lc_sigma, int(self.lc_kernel_sizes[s - 1]), self.lc_phi, self.lc_w1,
          self.lc_phi_bottleneck, self.lc_bn_zero_init, self.lc_mbpm_trainable, dtype=self.dtype,
          name=f"layer{s}_{b}")(x_c, x_f, train)

    f_c = jnp.mean(x_c, axis=(1, 2))  # (N*Tq, C)
    f_f = jnp.mean(x_f, axis=(1, 2))  # (N*T, C)
    frames = t
    if tq != t:  # different frame counts: average each pathway over its frames first
      f_c = f_c.reshape(n, tq, -1).mean(axis=1)
      f_f = f_f.reshape(n, t, -1).mean(axis=1)
      frames = 1
    head = Classifier(self.num_classes, self.dropout, dtype=self.dtype, name="head")
    if self.fusion == "avg_before_fc":
      logits = head((f_c + f_f) / 2, train)
    elif self.fusion == "concat_before_fc":
      logits = head(jnp.concatenate([f_c, f_f], axis=-1), train)
    else:  # one shared fc on both pathways (Table 5.4 caption)
      both = head(jnp.concatenate([f_c, f_f], axis=0), train).astype(jnp.float32)
      l_c, l_f = both[: f_c.shape[0]], both[f_c.shape[0]:]
      logits = (l_c + l_f) / 2 if self.fusion == "avg_after_fc" else jnp.maximum(l_c, l_f)
    logits = logits.astype(jnp.float32)
    return logits.reshape(n, frames, -1).mean(axis=1)


class X3DDuoBlock(nn.Module):
  """One X3D residual block per pathway (``quiet``, ``busy``) and an optional lateral connection.

  X3D tensors are ``(N, T, H, W, C)``; the connection runs frames-as-batch, as the reference's does.
  """
  dim_inner: int
  dim_out: int
  spatial_stride: int
  use_se: bool
  quiet_frames: int
  busy_frames: int
  block_index: int
  lateral: bool
  lc_design: str = "IV"
  lc_sigma: float = 0.9
  lc_kernel_size: int = 7
  lc_phi: bool = True
  lc_w1: bool = True
  lc_phi_bottleneck: int = 0
  lc_bn_zero_init: bool = False
  lc_mbpm_trainable: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_c, x_f, train: bool = False):
    # X3D is imported where it is used so that the ResNet models register even without it.
    from vidjax.backbones.x3d import X3DBlock
    x_c = X3DBlock(self.dim_inner, self.dim_out, self.spatial_stride, use_se=self.use_se,
                   dtype=self.dtype, name="quiet")(x_c, train)
    x_f = X3DBlock(self.dim_inner, self.dim_out, self.spatial_stride, use_se=self.use_se,
                   dtype=self.dtype, name="busy")(x_f, train)
    if self.lateral:
      (n, tq, hq, wq, c), (_, tb, hb, wb, _) = x_c.shape, x_f.shape
      y_c, y_f = BandPassLateralConnection(
          self.block_index, tq, tb, self.lc_design, self.lc_sigma, self.lc_kernel_size, self.lc_phi,
          self.lc_w1, self.lc_phi_bottleneck, self.lc_bn_zero_init, self.lc_mbpm_trainable,
          dtype=self.dtype, name="lc")(x_c.reshape(n * tq, hq, wq, c), x_f.reshape(n * tb, hb, wb, c), train)
      x_c, x_f = y_c.reshape(x_c.shape), y_f.reshape(x_f.shape)
    return x_c, x_f


class BusyQuietX3D(nn.Module):
  """BQN with two X3D pathways (BQN-X3D-M of Tables 5.9, 5.10; reference ``src/bqn_x3d_reverse.py``).

  Same inputs as ``BusyQuietResNet`` (stem MBPM -> Busy; first frame of each triplet, bilinear to 160^2
  -> Quiet) on X3D stems (``quiet_stem``, ``busy_stem``) and 26 paired X3D blocks ``stage{s}_{b}`` (X3D-M;
  ``vidjax.backbones.x3d``). Defaults follow the reference, whose numbers the thesis reports (48 frames,
  Quiet 160^2 / Busy 256^2, 174 classes: 7.08M params, 9.28 GMACs conv/linear; thesis 6.6M / 9.7G, the
  thesis' parameter count leaves out the lateral connections, REFERENCE.md section 13):
  * alternating BPLCs by global block index over the 26 blocks, each with a 1x1 conv after the resize
    (``lc_phi`` on Busy -> Quiet, ``lc_w1`` on Quiet -> Busy) and a BN whose gamma is 1 at init
    (``lc_bn_zero_init=False``: the reference's ``init_net_weights`` resets the zero-init; the thesis says
    zero); LC MBPM k = 7 in stages 1-3 and 3 in stage 4 (the reference: ``7 if dim_out < 192 else 3``);
  * ``heads='separate'`` (code: one X3D head per pathway, global average pooling, logits averaged) or
    ``'shared'`` (thesis section 5.4: the classification layers share parameters; here the whole head,
    BN included, is applied to both pathways).
  """
  num_classes: int
  variant: str = "m"
  dropout: float = 0.5
  width_factor: float = 2.0
  depth_factor: Optional[float] = None
  bottleneck_factor: float = 2.25
  head_dim_out: int = 2048
  quiet_size: Optional[int] = None
  quiet_scale: float = 160.0 / 256.0
  quiet_frames: Optional[int] = None
  quiet_input: str = "first_frame"
  stem_sigma: float = 1.1
  stem_kernel_size: int = 9
  stem_mbpm_trainable: bool = True
  lc_design: str = "IV"
  lc_blocks: Union[str, Sequence[int], None] = "all"
  lc_stages: Sequence[int] = (1, 2, 3, 4)
  lc_sigma: float = 0.9
  lc_kernel_sizes: Sequence[int] = (7, 7, 7, 3)
  lc_phi: bool = True
  lc_w1: bool = True
  lc_phi_bottleneck: int = 0
  lc_bn_zero_init: bool = False
  lc_mbpm_trainable: bool = True
  heads: str = "separate"
  dtype: Any = jnp.float32
  remat: bool = False  # recompute each duo block in the backward pass (memory for compute)

  def layout(self):
    from vidjax.backbones.x3d import VARIANTS, x3d_block_layout
    depth = self.depth_factor or VARIANTS[self.variant]["depth_factor"]
    return list(x3d_block_layout(self.width_factor, depth, self.bottleneck_factor))

  def lateral_blocks(self) -> frozenset:
    return lc_block_indices(self.lc_blocks, self.lc_stages, self.layout())

  @nn.compact
  def __call__(self, video, train: bool = False):
    from vidjax.backbones.x3d import STEM_DIM_IN, X3DHead, X3DStem, round_width
    if self.heads not in ("separate", "shared"):
      raise ValueError(f"heads must be 'separate' or 'shared', got {self.heads!r}")
    normalize_lc_design(self.lc_design)
    n, t, tq, qsize, busy, quiet = busy_quiet_inputs(self, video)
    stem_width = round_width(STEM_DIM_IN, self.width_factor)
    x_c = X3DStem(stem_width, dtype=self.dtype, name="quiet_stem")(quiet, train)
    x_f = X3DStem(stem_width, dtype=self.dtype, name="busy_stem")(busy, train)
    lateral = self.lateral_blocks()
    dim_inner = None
    duo = nn.remat(X3DDuoBlock, static_argnums=(3,)) if self.remat else X3DDuoBlock  # (self, x_c, x_f, train)
    for i, (s, b, _, dim_inner, dim_out, stride, use_se) in enumerate(self.layout(), 1):
      x_c, x_f = duo(
          dim_inner, dim_out, stride, use_se, tq, t, i, i in lateral, self.lc_design, self.lc_sigma,
          int(self.lc_kernel_sizes[s - 1]), self.lc_phi, self.lc_w1, self.lc_phi_bottleneck,
          self.lc_bn_zero_init, self.lc_mbpm_trainable, dtype=self.dtype,
          name=f"stage{s}_{b}")(x_c, x_f, train)
    if self.heads == "shared":
      head = X3DHead(self.num_classes, dim_inner, self.head_dim_out, self.dropout, None,
                     dtype=self.dtype, name="head")
      l_c, l_f = head(x_c, train), head(x_f, train)
    else:
      l_c = X3DHead(self.num_classes, dim_inner, self.head_dim_out, self.dropout, None,
                    dtype=self.dtype, name="quiet_head")(x_c, train)
      l_f = X3DHead(self.num_classes, dim_inner, self.head_dim_out, self.dropout, None,
                    dtype=self.dtype, name="busy_head")(x_f, train)
    return ((l_c + l_f) / 2).astype(jnp.float32)


def _stage_sizes(cfg):
  return tuple(cfg.stage_sizes) if cfg.get("stage_sizes") else None


@register("busy_tsm_resnet")
def busy_tsm_resnet(cfg, dtype):
  """MBPM + TSM-ResNet. ``cfg``: those of ``tsm_resnet`` + mbpm_sigma, mbpm_kernel_size, mbpm_trainable."""
  return BusyTSMResNet(
      num_classes=cfg.num_classes,
      depth=cfg.get("depth", 50),
      width=cfg.get("width", 1.0),
      stage_sizes=_stage_sizes(cfg),
      shift_div=cfg.get("shift_div", 8) if cfg.get("shift", True) else 0,
      dropout=cfg.get("dropout", 0.5),
      mbpm_sigma=cfg.get("mbpm_sigma", 1.1),
      mbpm_kernel_size=cfg.get("mbpm_kernel_size", 9),
      mbpm_trainable=cfg.get("mbpm_trainable", True),
      dtype=dtype)


def _lc_blocks(cfg):
  lc_blocks = cfg.get("lc_blocks", "all")
  if not isinstance(lc_blocks, str) and lc_blocks is not None:
    lc_blocks = tuple(int(i) for i in lc_blocks)
  return lc_blocks


@register("bqn_resnet")
def bqn_resnet(cfg, dtype):
  """BQN TSM-ResNet-50/101; every field of ``BusyQuietResNet`` may be set in ``cfg``."""
  return BusyQuietResNet(
      num_classes=cfg.num_classes,
      depth=cfg.get("depth", 50),
      width=cfg.get("width", 1.0),
      stage_sizes=_stage_sizes(cfg),
      shift_div=cfg.get("shift_div", 8) if cfg.get("shift", True) else 0,
      dropout=cfg.get("dropout", 0.5),
      quiet_size=cfg.get("quiet_size", None) or None,
      quiet_scale=cfg.get("quiet_scale", 160.0 / 256.0),
      quiet_frames=cfg.get("quiet_frames", None) or None,
      quiet_input=cfg.get("quiet_input", "first_frame"),
      stem_sigma=cfg.get("stem_sigma", 1.1),
      stem_kernel_size=cfg.get("stem_kernel_size", 9),
      stem_mbpm_trainable=cfg.get("stem_mbpm_trainable", True),
      lc_design=cfg.get("lc_design", "IV"),
      lc_blocks=_lc_blocks(cfg),
      lc_stages=tuple(cfg.get("lc_stages", (1, 2, 3, 4))),
      lc_sigma=cfg.get("lc_sigma", 0.9),
      lc_kernel_sizes=tuple(cfg.get("lc_kernel_sizes", (7, 7, 7, 3))),
      lc_phi=cfg.get("lc_phi", False),
      lc_w1=cfg.get("lc_w1", False),
      lc_phi_bottleneck=cfg.get("lc_phi_bottleneck", 0),
      lc_bn_zero_init=cfg.get("lc_bn_zero_init", True),
      lc_mbpm_trainable=cfg.get("lc_mbpm_trainable", True),
      fusion=cfg.get("fusion", "avg_after_fc"),
      dtype=dtype)


@register("bqn_x3d")
def bqn_x3d(cfg, dtype):
  """BQN X3D (default X3D-M); every field of ``BusyQuietX3D`` may be set in ``cfg``."""
  return BusyQuietX3D(
      num_classes=cfg.num_classes,
      variant=cfg.get("variant", "m"),
      dropout=cfg.get("dropout", 0.5),
      width_factor=cfg.get("width_factor", 2.0),
      depth_factor=cfg.get("depth_factor", None),
      bottleneck_factor=cfg.get("bottleneck_factor", 2.25),
      head_dim_out=cfg.get("head_dim_out", 2048),
      quiet_size=cfg.get("quiet_size", None) or None,
      quiet_scale=cfg.get("quiet_scale", 160.0 / 256.0),
      quiet_frames=cfg.get("quiet_frames", None) or None,
      quiet_input=cfg.get("quiet_input", "first_frame"),
      stem_sigma=cfg.get("stem_sigma", 1.1),
      stem_kernel_size=cfg.get("stem_kernel_size", 9),
      stem_mbpm_trainable=cfg.get("stem_mbpm_trainable", True),
      lc_design=cfg.get("lc_design", "IV"),
      lc_blocks=_lc_blocks(cfg),
      lc_stages=tuple(cfg.get("lc_stages", (1, 2, 3, 4))),
      lc_sigma=cfg.get("lc_sigma", 0.9),
      lc_kernel_sizes=tuple(cfg.get("lc_kernel_sizes", (7, 7, 7, 3))),
      lc_phi=cfg.get("lc_phi", True),
      lc_w1=cfg.get("lc_w1", True),
      lc_phi_bottleneck=cfg.get("lc_phi_bottleneck", 0),
      lc_bn_zero_init=cfg.get("lc_bn_zero_init", False),
      lc_mbpm_trainable=cfg.get("lc_mbpm_trainable", True),
      heads=cfg.get("heads", "separate"),
      dtype=dtype)
