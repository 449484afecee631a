"""Helpers that read a config: the model's input shape, the compute dtype."""
from __future__ import annotations

import jax.numpy as jnp


def frames_per_clip(config) -> int:
  return int(config.data.num_segments) * int(config.data.frames_per_segment)


def input_shape(config, batch: int = 1) -> tuple[int, int, int, int, int]:
  """``(N, F, H, W, 3)`` of the clips the model is fed (F = segments x frames per segment)."""
  s = int(config.data.crop_size)
  return (batch, frames_per_clip(config), s, s, 3)


def compute_dtype(config):
  return {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}[config.get("dtype", "float32")]
