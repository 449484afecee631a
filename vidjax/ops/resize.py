"""The training crop's resize, on the device, with the exact arithmetic of PIL's bilinear resize.

The reference's ``GroupMultiScaleCrop`` crops a box of ``w x h`` pixels (``h, w`` drawn from the
multi-scale list, REFERENCE.md section 10) out of every frame and resizes it to ``crop_size^2`` with
``PIL.Image.resize(..., BILINEAR)``; that resize is about half of the loader's CPU time. With
``config.data.crop_resize='step'`` the host only decodes and slices the box into the top-left corner of
a fixed ``canvas x canvas`` array (so every clip of a batch has one shape), and ``crop_resize_flip``
finishes the clip inside the jitted step: the resize, then the horizontal flip.

It reproduces Pillow's ``ImagingResample`` (``libImaging/Resample.c``) to the bit:

* coefficients (``precompute_coeffs``): output pixel ``i`` of a resize ``n -> m`` is centred at
  ``c = (i + 0.5) n / m`` in the input; the triangle filter is widened by ``s = max(n / m, 1)``
  (antialiasing when shrinking); taps ``j`` from ``int(c - s + 0.5)`` (>= 0) to ``int(c + s + 0.5)``
  (<= n), weights ``tri((j - c + 0.5) / s)`` normalised to sum 1;
* 8-bit fixed point (``normalize_coeffs_8bpc``): weights times ``2^22`` rounded half away from zero;
  each output is ``clip8((2^21 + sum_j w_j x_j) >> 22)``;
* two passes, each rounding to uint8: horizontal first, except (Pillow >= 13.0) when the height
  shrinks by more than twice as many pixels as the width (``h - m > 0 and h - m > 2 (w - m)``), then
  vertical first. Pillow 12.3 and older always go horizontal first; ``crop_resize_flip`` follows the
  installed Pillow (``PILLOW_ORDERS_PASSES``), so the step and the loader give the same pixels. The
  two orders differ by at most 1 in a few pixels.

The coefficients depend only on the box size: ``coeff_table`` computes them with NumPy in double
precision (as Pillow does) for every box size ``1 .. canvas`` when the step is traced, and the device
looks up the clip's row. Each pass is then ``K`` gathers and multiply-adds (``K = 2 ceil(s) + 1``).
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

PRECISION_BITS = 32 - 8 - 2  # Pillow's 8-bit resampling precision


def _pillow_orders_passes() -> bool:
  """Whether the installed Pillow (>= 13.0) may run the vertical pass first (``ImagingResampleInner``)."""
  try:
    from PIL import __version__
    return int(__version__.split(".")[0]) >= 13
  except (ImportError, ValueError):
    return True


PILLOW_ORDERS_PASSES = _pillow_orders_passes()


def num_taps(in_size: int, out_size: int) -> int:
  """Pillow's kernel size for a resize ``in_size -> out_size``: ``2 ceil(support) + 1``."""
  return 2 * int(math.ceil(max(in_size / out_size, 1.0))) + 1


def pil_bilinear_coeffs(in_size: int, out_size: int, taps: int | None = None):
  """``(index, weight)`` arrays ``(out_size, taps)``: input pixel and int32 fixed-point weight of every
  tap of Pillow's bilinear resize ``in_size -> out_size`` (``precompute_coeffs`` +
  ``normalize_coeffs_8bpc``). Unused taps point at pixel 0 with weight 0."""
  scale = in_size / out_size
  filterscale = max(scale, 1.0)
  support = 1.0 * filterscale  # the bilinear filter's support is 1
  taps = taps or num_taps(in_size, out_size)
  index = np.zeros((out_size, taps), np.int32)
  weight = np.zeros((out_size, taps), np.int32)
  for i in range(out_size):
    centre = (i + 0.5) * scale
    lo = max(int(centre - support + 0.5), 0)
    hi = min(int(centre + support + 0.5), in_size)
    j = np.arange(lo, hi)
    w = np.maximum(0.0, 1.0 - np.abs((j - centre + 0.5) / filterscale))
    total = w.sum()
    if total != 0.0:
      w = w / total
    fixed = np.where(w < 0, -0.5 + w * (1 << PRECISION_BITS), 0.5 + w * (1 << PRECISION_BITS))
    if len(j) > taps:
      raise ValueError(f"resize {in_size} -> {out_size} needs {len(j)} taps, more than {taps}")
    index[i, :len(j)] = j
    weight[i, :len(j)] = np.trunc(fixed).astype(np.int32)  # C's (int) cast truncates toward zero
  return index, weight


@functools.lru_cache(maxsize=16)
def coeff_table(canvas: int, out_size: int):
  """Coefficients of every box size: ``index, weight`` of shape ``(canvas + 1, out_size, taps)``, row
  ``n`` for a box of ``n`` pixels (row 0 unused)."""
  taps = num_taps(canvas, out_size)
  index = np.zeros((canvas + 1, out_size, taps), np.int32)
  weight = np.zeros((canvas + 1, out_size, taps), np.int32)
  for n in range(1, canvas + 1):
    index[n], weight[n] = pil_bilinear_coeffs(n, out_size, taps)
  return index, weight


def _clip8(acc):
  return jnp.clip(acc >> PRECISION_BITS, 0, 255)


def _pass(x, index, weight, axis: int):
  """One resampling pass of ``x`` (int32) along ``axis``: output position ``i`` =
  ``clip8(2^21 + sum_k weight[i, k] x[index[i, k]])``."""
  shape = [1] * x.ndim
  shape[axis] = index.shape[0]
  acc = jnp.full((), 1 << (PRECISION_BITS - 1), jnp.int32)
  for k in range(index.shape[1]):
    acc = acc + weight[:, k].reshape(shape) * jnp.take(x, index[:, k], axis=axis)
  return _clip8(acc)


def crop_resize_flip(canvas, box_hw, flip, size: int, pillow_orders_passes: bool | None = None):
  """Finishes a batch of training clips: resize each clip's box to ``size x size``, then mirror it.

  ``canvas``: uint8 ``(B, F, P, P, C)``, clip b's box in ``[:h_b, :w_b]`` (the rest is ignored);
  ``box_hw``: int ``(B, 2)`` box heights and widths (1 .. P); ``flip``: bool/int ``(B,)``, mirror the
  clip after the resize (``GroupRandomHorizontalFlip``). Returns uint8 ``(B, F, size, size, C)``, equal to
  ``PIL.Image.resize((size, size), BILINEAR)`` of the box followed by ``FLIP_LEFT_RIGHT``.
  ``pillow_orders_passes``: Pillow >= 13.0's choice of the first pass (default: the installed Pillow's).
  """
  orders = PILLOW_ORDERS_PASSES if pillow_orders_passes is None else pillow_orders_passes
  p, q = canvas.shape[2], canvas.shape[3]
  iy, wy = (jnp.asarray(a) for a in coeff_table(p, size))
  ix, wx = (jnp.asarray(a) for a in coeff_table(q, size))

  def one(frames, hw, mirror):
    col_index, col_weight = ix[hw[1]], wx[hw[1]]  # (size, taps): output columns
    col_index = jnp.where(mirror, col_index[::-1], col_index)  # flipping = reading the columns backwards
    col_weight = jnp.where(mirror, col_weight[::-1], col_weight)
    row_index, row_weight = iy[hw[0]], wy[hw[0]]
    x = frames.astype(jnp.int32)
    across = _pass(_pass(x, col_index, col_weight, axis=2), row_index, row_weight, axis=1)
    if not orders:
      return across.astype(jnp.uint8)
    down = _pass(_pass(x, row_index, row_weight, axis=1), col_index, col_weight, axis=2)
    vertical_first = (hw[0] > size) & (hw[0] - size > 2 * (hw[1] - size))
    return jnp.where(vertical_first, down, across).astype(jnp.uint8)

  return jax.vmap(one)(canvas, jnp.asarray(box_hw, jnp.int32), jnp.asarray(flip).astype(bool))
