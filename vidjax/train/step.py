"""Pure train and eval steps; ``loop.py`` jits them with shardings.

Clips arrive as uint8 and are converted and normalised here, on the device. The dropout key of step
``s`` is ``fold_in(key(seed), s)``: a resumed run draws the same keys as an uninterrupted one.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from vidjax.train import objectives
from vidjax.train.state import TrainState


def normalize(video, mean, std, dtype=jnp.float32):
  """uint8 ``(..., 3)`` -> ``(x / 255 - mean) / std``."""
  x = video.astype(jnp.float32) / 255.0
  return ((x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)).astype(dtype)


def train_step(state: TrainState, batch: dict, *, model, tx, config):
  num_classes = config.model.num_classes
  video = normalize(batch["video"], config.data.mean, config.data.std)
  labels = batch["label"]
  rng = jax.random.fold_in(jax.random.key(config.seed), state.step)
  aux_weight = config.optim.get("aux_loss_weight", 1.0)

  def loss_fn(params):
    variables = {"params": params}
    if state.batch_stats:
      variables["batch_stats"] = state.batch_stats
    logits, mutated = model.apply(variables, video, train=True, rngs={"dropout": rng},
                                  mutable=["batch_stats", "losses"])
    ce = objectives.cross_entropy(logits, labels, num_classes, config.optim.label_smoothing)
    aux = objectives.sown_losses(mutated.get("losses", {}))
    return ce + aux_weight * aux, (logits, mutated.get("batch_stats", {}), ce, aux)

  (loss, (logits, batch_stats, ce, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = jax.tree.map(lambda p, u: p + u, state.params, updates)
  metrics = {
      "loss": loss, "ce": ce, "aux_loss": aux,
      "top1": objectives.topk_correct(logits, labels, 1).mean(),
      "grad_norm": jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads))),
  }
  new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                            opt_state=opt_state)
  return new_state, metrics


def eval_step(variables, batch: dict, *, model, config):
  """Logits of every view averaged per video: ``video (B, V, F, H, W, 3)`` -> ``(B, K)``."""
  video = batch["video"]
  b, v = video.shape[:2]
  x = normalize(video.reshape((b * v,) + video.shape[2:]), config.data.mean, config.data.std)
  logits = model.apply(variables, x, train=False)
  return logits.astype(jnp.float32).reshape(b, v, -1).mean(axis=1)


def jit_train_step(model, tx, config, state_sharding, batch_sharding):
  fn = functools.partial(train_step, model=model, tx=tx, config=config)
  return jax.jit(fn, in_shardings=(state_sharding, batch_sharding),
                 out_shardings=(state_sharding, None), donate_argnums=(0,))
