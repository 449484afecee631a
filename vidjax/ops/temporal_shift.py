"""Temporal Shift Module (Lin et al., TSM) as a pure function.

REFERENCE.md section 2: with ``fold = C // fold_div`` the first ``fold`` channels of frame t take
frame t+1's values ("shift left"), the next ``fold`` channels take frame t-1's values ("shift right"),
the rest are unchanged; frames shifted in from outside the clip are zero.
"""
from __future__ import annotations

import jax.numpy as jnp


def temporal_shift(x: jnp.ndarray, num_frames: int, fold_div: int = 8) -> jnp.ndarray:
  """Shifts 1/fold_div of the channels forward and 1/fold_div backward in time.

  Args:
    x: frames-as-batch features ``(N*T, H, W, C)`` with the T frames of a clip contiguous.
    num_frames: T.
    fold_div: 8 in TSM (1/8 of the channels each way).
  Returns:
    Array of the same shape as ``x``.
  """
  x = jnp.asarray(x)
  nt, h, w, c = x.shape
  if nt % num_frames:
    raise ValueError(f"temporal_shift: batch {nt} is not a multiple of num_frames={num_frames}")
  fold = c // fold_div
  if fold == 0 or num_frames == 1:
    # Nothing to exchange: a single frame only loses the shifted channels to zero padding.
    if num_frames == 1 and fold > 0:
      return x.at[..., : 2 * fold].set(0)
    return x
  v = x.reshape(nt // num_frames, num_frames, h, w, c)
  zeros = jnp.zeros_like(v[:, :1, ..., :fold])
  left = jnp.concatenate([v[:, 1:, ..., :fold], zeros], axis=1)  # frame t <- t+1
  right = jnp.concatenate([zeros, v[:, :-1, ..., fold:2 * fold]], axis=1)  # frame t <- t-1
  out = jnp.concatenate([left, right, v[..., 2 * fold:]], axis=-1)
  return out.reshape(nt, h, w, c)
