"""The training state: one pytree that jit donates, orbax saves and restores."""
from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  step: jnp.ndarray
  params: Any
  batch_stats: Any
  opt_state: optax.OptState

  @property
  def variables(self) -> dict:
    v = {"params": self.params}
    if self.batch_stats:
      v["batch_stats"] = self.batch_stats
    return v


def create(model, tx, video_shape, seed: int) -> TrainState:
  """Initialises the model on a zero clip of ``video_shape`` (a function for ``jax.jit``)."""
  variables = model.init({"params": jax.random.key(seed), "dropout": jax.random.key(seed + 1)},
                         jnp.zeros(video_shape, jnp.float32), train=False)
  params = variables["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params))
