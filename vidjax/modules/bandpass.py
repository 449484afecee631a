"""Motion Band-Pass Module and Band-Pass Lateral Connections (thesis sections 5.3 and 5.4.3).

``MotionBandPass`` (MBPM, Eq. 5.1-5.3) on ``(N, T, H, W, C)`` clips:

  ``MBPM(I) = H^{3x1x1}_{s}( LoG^{1xkxk}_sigma(I) )``

* ``LoG``: channel-wise (depthwise) ``k x k`` convolution initialised with ``vidjax.ops.filters.log_kernel``
  (normalised by its own sum, REFERENCE.md section 6), stride 1, after *reflect* padding of ``(k-1)//2``
  (``F.pad(mode='reflect')`` = ``jnp.pad(mode='reflect')``).
* ``H``: channel-wise temporal convolution initialised with ``[-1, 2, -1] / 3`` (Eq. 5.1's ``h``).
  - ``three_steps=True`` (Busy stem, section 5.4.1): ``(N, 3T, ...) -> (N, T, ...)``, stride 3, no
    temporal padding, i.e. ``Gamma_t = w0 LoG(f_3t) + w1 LoG(f_3t+1) + w2 LoG(f_3t+2)`` per channel.
  - ``three_steps=False`` (inside a BPLC, "s = 1"): T is kept, stride 1 with *replicate* padding (the
    first and last frames are duplicated), as the reference does.
* Both kernels are trainable (section 5.5.2). ``trainable=False`` wraps them in ``stop_gradient``: the
  "untrained MBPM" rows of Fig. 5.3. The parameters still exist (so checkpoints and parameter counts
  are unchanged); give them an optimiser group with lr multiplier 0 so that weight decay does not move
  them either.
* Both convolutions are functional, :func:`vidjax.ops.depthwise.depthwise_conv` (``lax.conv`` with
  ``feature_group_count=C`` on GPU/TPU, a sum of shifted slices on a CPU, where XLA's grouped conv is very
  slow; the reference uses the functional ``F.conv2d`` / ``F.conv1d``), so
  ``vidjax.tools.flops.count_conv_linear_macs`` leaves them out, as the reference's "GMACs mod" does;
  they are in ``gmacs_total`` (``flops`` lowers them as ``lax.conv``; stem MBPM: 0.296 GMACs on
  24 x 224^2, Table 5.1 "0.3G"). Parameters: ``C k^2 + 3 C`` (252 for the RGB stem, Table 5.1 "0.2K").
  The normalised LoG has entries of a few hundred that cancel, so the convolutions run at
  ``Precision.HIGHEST`` (TF32 would lose the cancellation).
  Parameter layout: ``log/kernel (k, k, 1, C)`` (HWIO, depthwise) = torch ``conv_s.weight (C, 1, k, k)``
  transposed; ``temporal/kernel (3, 1, C)`` = torch ``conv_t.weight (C, 1, 3)`` transposed.

``BandPassLateralConnection`` (BPLC, Eq. 5.5; LC designs of Table 5.7 / Fig. 5.5) between block ``i``
of the Quiet pathway (``x_c``) and of the Busy pathway (``x_f``), both frames-as-batch
``(N*T, H, W, C)``. Sizes are matched by bilinear resizing (half-pixel centres, no antialiasing, as
``nn.Upsample(mode='bilinear', align_corners=False)``), and linearly in time when the two pathways have
different frame counts (Table 5.8's reduced Quiet T; the reference has no such case).

* ``'IV'`` / ``'BPLC'`` (default; the model of the thesis tables = reference ``src/bqn_resnet_reverse.py``):
  direction alternates with the *global 1-based* block index ``i``:
  - ``i`` odd, Busy -> Quiet: ``y_c = x_c + BN(phi(Resize(x_f)))``, ``y_f = x_f``;
  - ``i`` even, Quiet -> Busy: ``y_f = x_f + BN(W1(Resize(MBPM(x_c))))``, ``y_c = x_c``; the MBPM (stride
    1, sigma 0.9, k 7, or 3 in res5) runs at the Quiet resolution before upsampling.
  Where Eq. 5.5 and the code disagree, the default follows the code (whose numbers the thesis reports):
  ``phi`` and ``W1`` are identity by default (the reference's 1x1 convs are commented out; the thesis
  parameter count of BQN-R50, 47.4M, has none), ``phi=True`` adds Eq. 5.5's ``phi`` as a 1x1 conv
  (``phi_bottleneck=r > 0``: the "bottleneck MLP" form, 1x1 conv C->C/r, ReLU, 1x1 conv C/r->C),
  ``w1=True`` adds a 1x1 conv on the Quiet -> Busy path (``W_1`` of Fig. 5.5; BQN-X3D and
  ``src/bqn_resnet.py`` use both). BN gamma = beta = 0 at init (Eq. 5.5 text, R50 code) unless
  ``bn_zero_init=False`` (BQN-X3D code re-initialises them to gamma 1, REFERENCE.md section 8).
* ``'V'``: as ``'IV'`` without the MBPM on the Quiet -> Busy path (Table 5.7 "LC-V").
* ``'III'``: bidirectional in every block, both updates computed from the *input* ``x_c, x_f``
  (reference ``src/bqn_resnet.py``).
* ``'I'`` / ``'II'``: unidirectional in every block, Busy -> Quiet (``'I'``) or Quiet -> Busy with MBPM
  (``'II'``). Fig. 5.5 is only a diagram and the thesis text says no more than "LC-I and LC-II are
  unidirectional"; which of the two directions is "I" is our reading.

Thesis: BPLC placement/number is ablated in Tables 5.5 and 5.6; the caller (``vidjax.models.bqn``)
decides which blocks get one.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vidjax.backbones.layers import batch_norm, conv
from vidjax.ops.depthwise import depthwise_conv
from vidjax.ops.filters import log_kernel, temporal_kernel

_HIGHEST = jax.lax.Precision.HIGHEST

LC_DESIGNS = ("I", "II", "III", "IV", "V")


def normalize_lc_design(design: str) -> str:
  """``'LC-IV'``, ``'iv'``, ``'bplc'`` -> ``'IV'``."""
  d = str(design).upper().replace("LC-", "").replace("LC", "").strip()
  if d in ("BPLC", "B"):
    d = "IV"
  if d not in LC_DESIGNS:
    raise ValueError(f"unknown lateral-connection design {design!r}; one of LC-I..LC-V or 'BPLC'")
  return d


class _Kernel(nn.Module):
  """Holds one trainable filter kernel (named ``kernel`` so optimiser rules see a conv-like weight)."""
  init_value: Callable[[], np.ndarray]

  @nn.compact
  def __call__(self):
    value = self.init_value()
    return self.param("kernel", lambda key, shape, dtype: jnp.asarray(value, dtype),
                      value.shape, jnp.float32)


class MotionBandPass(nn.Module):
  """MBPM of Eq. 5.3 on ``(N, F, H, W, C)``; see the module docstring.

  Attributes:
    sigma, kernel_size: LoG scale and spatial kernel size (1.1 / 9 in the stem).
    three_steps: True: ``F = 3T`` frames -> T (stride-3 temporal conv over triplets); False: T -> T
      (stride 1, replicate padding).
    trainable: False freezes both kernels with ``stop_gradient``.
  """
  sigma: float = 1.1
  kernel_size: int = 9
  three_steps: bool = True
  trainable: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    n, f, h, w, c = x.shape
    k = self.kernel_size
    spatial = _Kernel(lambda: np.tile(log_kernel(self.sigma, k)[:, :, None, None], (1, 1, 1, c)),
                      name="log")()
    temporal = _Kernel(lambda: np.tile(temporal_kernel()[:, None, None], (1, 1, c)),
                       name="temporal")()
    if not self.trainable:
      spatial, temporal = jax.lax.stop_gradient(spatial), jax.lax.stop_gradient(temporal)
    x = x.astype(self.dtype)

    # LoG: depthwise k x k, reflect padding, stride 1, on every frame.
    p = (k - 1) // 2
    y = x.reshape(n * f, h, w, c)
    if p:
      y = jnp.pad(y, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")
    y = depthwise_conv(y, spatial.astype(self.dtype), 1, 0, precision=_HIGHEST)
    y = y.reshape(n, f, h, w, c)

    # H: depthwise 3-tap temporal conv (stride 3 over triplets, or stride 1 with replicate padding).
    if self.three_steps:
      if f % 3:
        raise ValueError(f"MotionBandPass(three_steps=True) needs 3T frames, got {f}")
      stride = 3
    else:
      stride = 1
      y = jnp.pad(y, ((0, 0), (1, 1), (0, 0), (0, 0), (0, 0)), mode="edge")
    kt = temporal.astype(self.dtype).reshape(3, 1, 1, 1, c)
    return depthwise_conv(y, kt, (stride, 1, 1), 0, precision=_HIGHEST)


def resize_frames(x: jnp.ndarray, num_frames: int, frames_out: int, hw: tuple[int, int]) -> jnp.ndarray:
  """Bilinear (half-pixel, no antialias) resize of ``(N*T, H, W, C)`` to ``(N*T', h, w, C)``.

  Time is resized linearly (same convention) only when ``frames_out != num_frames``.
  """
  nt, h, w, c = x.shape
  if (h, w) == tuple(hw) and frames_out == num_frames:
    return x
  if frames_out == num_frames:
    return jax.image.resize(x, (nt, hw[0], hw[1], c), "bilinear", antialias=False)
  n = nt // num_frames
  v = x.reshape(n, num_frames, h, w, c)
  v = jax.image.resize(v, (n, frames_out, hw[0], hw[1], c), "linear", antialias=False)
  return v.reshape(n * frames_out, hw[0], hw[1], c)


class _Linear1x1(nn.Module):
  """``phi`` / ``W1`` of Eq. 5.5 / Fig. 5.5: a 1x1 conv, or a bottleneck (1x1, ReLU, 1x1) when r > 0."""
  features: int
  bottleneck: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    if self.bottleneck > 0:
      x = conv(max(1, self.features // self.bottleneck), 1, name="conv_a", dtype=self.dtype)(x)
      x = nn.relu(x)
      return conv(self.features, 1, name="conv_b", dtype=self.dtype)(x)
    return conv(self.features, 1, name="conv", dtype=self.dtype)(x)


class BandPassLateralConnection(nn.Module):
  """BPLC (Eq. 5.5) and the LC designs of Table 5.7 after residual block ``block_index``.

  Called as ``y_c, y_f = lc(x_c, x_f, train=...)`` with ``x_c`` (Quiet) ``(N*Tq, Hq, Wq, C)`` and ``x_f``
  (Busy) ``(N*Tb, Hb, Wb, C)``; ``quiet_frames`` = Tq, ``busy_frames`` = Tb.

  Submodules (created only where the design uses them): Busy -> Quiet ``to_quiet_phi``, ``to_quiet_bn``;
  Quiet -> Busy ``to_busy_mbpm``, ``to_busy_w1``, ``to_busy_bn``.
  """
  block_index: int
  quiet_frames: int
  busy_frames: int
  design: str = "IV"
  sigma: float = 0.9
  kernel_size: int = 7
  phi: bool = False
  w1: bool = False
  phi_bottleneck: int = 0
  bn_zero_init: bool = True
  mbpm_trainable: bool = True
  dtype: Any = jnp.float32

  def directions(self) -> tuple[bool, bool, bool]:
    """``(busy_to_quiet, quiet_to_busy, with_mbpm)`` of this block."""
    d = normalize_lc_design(self.design)
    odd = self.block_index % 2 == 1
    if d in ("IV", "V"):
      return odd, not odd, d == "IV"
    if d == "III":
      return True, True, True
    if d == "I":
      return True, False, True
    return False, True, True  # "II"

  @nn.compact
  def __call__(self, x_c, x_f, train: bool = False):
    to_quiet, to_busy, with_mbpm = self.directions()
    y_c, y_f = x_c, x_f
    if to_quiet:
      z = resize_frames(x_f, self.busy_frames, self.quiet_frames, x_c.shape[1:3])
      if self.phi:
        z = _Linear1x1(x_c.shape[-1], self.phi_bottleneck, self.dtype, name="to_quiet_phi")(z)
      z = batch_norm(train, name="to_quiet_bn", zero_init=self.bn_zero_init, dtype=self.dtype)(z)
      y_c = x_c + z.astype(x_c.dtype)
    if to_busy:
      z = x_c
      if with_mbpm:
        nt, h, w, c = z.shape
        z = MotionBandPass(self.sigma, self.kernel_size, three_steps=False,
                           trainable=self.mbpm_trainable, dtype=self.dtype, name="to_busy_mbpm")(
                               z.reshape(nt // self.quiet_frames, self.quiet_frames, h, w, c))
        z = z.reshape(nt, h, w, c)
      z = resize_frames(z, self.quiet_frames, self.busy_frames, x_f.shape[1:3])
      if self.w1:
        z = _Linear1x1(x_f.shape[-1], self.phi_bottleneck, self.dtype, name="to_busy_w1")(z)
      z = batch_norm(train, name="to_busy_bn", zero_init=self.bn_zero_init, dtype=self.dtype)(z)
      y_f = x_f + z.astype(x_f.dtype)
    return y_c, y_f
