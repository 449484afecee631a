"""Pure train and eval steps; ``loop.py`` jits them with shardings.

Clips arrive as uint8 and are converted and normalised here, on the device. The dropout key of step
``s`` is ``fold_in(key(seed), s)``: a resumed run draws the same keys as an uninterrupted one.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from vidjax.train import joint, objectives
from vidjax.train.state import TrainState


def normalize(video, mean, std, dtype=jnp.float32):
  """uint8 ``(..., 3)`` -> ``(x / 255 - mean) / std``."""
  x = video.astype(jnp.float32) / 255.0
  return ((x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)).astype(dtype)


def _forward(params, state, video, rng, model):
  variables = {"params": params}
  if state.batch_stats:
    variables["batch_stats"] = state.batch_stats
  return model.apply(variables, video, train=True, rngs={"dropout": rng}, mutable=["batch_stats", "losses"])


def train_step(state: TrainState, batch: dict, *, model, tx, config, total_steps: int = 0):
  """One SGD step. Loss: cross-entropy L2 plus the models' sown losses L1 (TSP ``l_proj``, PWTP ENoPR).

  Without a ``config.joint`` section the objective is ``L2 + aux_loss_weight * L1``. With one, both
  gradients come from a single forward pass (``jax.vjp`` pulled back with (1, 0) and (0, 1)) and
  ``joint.combine_gradients`` mixes them (separate / constant alpha / scale scheduler Eq. 3.19 / MGDA
  Eq. 3.18, thesis Table 3.9); alpha, L1 and L2 are logged every step.
  """
  num_classes = config.model.num_classes
  video = normalize(batch["video"], config.data.mean, config.data.std)
  labels = batch["label"]
  rng = jax.random.fold_in(jax.random.key(config.seed), state.step)
  joint_cfg = config.get("joint")

  def losses(params):
    logits, mutated = _forward(params, state, video, rng, model)
    l2 = objectives.cross_entropy(logits, labels, num_classes, config.optim.label_smoothing)
    l1 = objectives.sown_losses(mutated.get("losses", {}))
    return (l1, l2), (logits, mutated.get("batch_stats", {}))

  if joint_cfg is None:
    w = config.optim.get("aux_loss_weight", 1.0)

    def total(params):
      (l1, l2), aux = losses(params)
      return l2 + w * l1, (l1, l2, aux)

    (_, (l1, l2, (logits, batch_stats))), grads = jax.value_and_grad(total, has_aux=True)(state.params)
    alpha = jnp.asarray(w, jnp.float32)
  else:
    strategy = joint.from_config(joint_cfg, total_steps)
    (l1, l2), pullback, (logits, batch_stats) = jax.vjp(losses, state.params, has_aux=True)
    one, zero = jnp.ones((), l1.dtype), jnp.zeros((), l1.dtype)
    g1 = pullback((one, zero))[0]
    g2 = pullback((zero, one))[0]
    grads, alpha = joint.combine_gradients(
        strategy, g1, g2, state.step,
        joint.projection_mask(state.params, joint_cfg.get("projection_pattern", joint.DEFAULT_PROJECTION_PATTERN)))

  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = jax.tree.map(lambda p, u: p + u, state.params, updates)
  metrics = {
      "loss": l2 + l1 if joint_cfg is not None else l2 + alpha * l1, "ce": l2, "aux_loss": l1,
      "alpha": alpha,
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


def jit_train_step(model, tx, config, state_sharding, batch_sharding, total_steps: int = 0):
  fn = functools.partial(train_step, model=model, tx=tx, config=config, total_steps=total_steps)
  return jax.jit(fn, in_shardings=(state_sharding, batch_sharding),
                 out_shardings=(state_sharding, None), donate_argnums=(0,))
