"""Pure train and eval steps; ``loop.py`` jits them with shardings.

Clips arrive as uint8 and are converted and normalised here, on the device (with
``config.data.crop_resize='step'`` training clips arrive as crop boxes, resized and flipped here
first). The dropout key of step ``s`` is ``fold_in(key(seed), s)``: a resumed run draws the same keys
as an uninterrupted one.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from vidjax.train import joint, objectives
from vidjax.train.state import TrainState


def normalize(video, mean, std, dtype=jnp.float32):
  """uint8 ``(..., C)`` -> ``(x / 255 - mean) / std`` per channel.

  C = 3 (RGB), 2 (flow x, y) or 5 (RGB + flow); ``mean`` / ``std`` have C entries, or 3 RGB ones from
  which the flow entries are derived (``config_utils.channel_stats``: mean 0.5, std the mean RGB std).
  """
  from vidjax.config_utils import channel_stats
  mean, std = channel_stats(mean, std, video.shape[-1])
  x = video.astype(jnp.float32) / 255.0
  return ((x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)).astype(dtype)


def _forward(params, batch_stats, video, rng, model):
  variables = {"params": params}
  if batch_stats:
    variables["batch_stats"] = batch_stats
  return model.apply(variables, video, train=True, rngs={"dropout": rng}, mutable=["batch_stats", "losses"])


def _micro_batches(x, k: int):
  """``(B, ...) -> (k, B/k, ...)`` taking every k-th clip, so each device's rows feed every micro-batch."""
  b = x.shape[0]
  return jnp.swapaxes(x.reshape((b // k, k) + x.shape[1:]), 0, 1)


def train_step(state: TrainState, batch: dict, *, model, tx, config, total_steps: int = 0):
  """One SGD step. Loss: cross-entropy L2 plus the models' sown losses L1 (TSP ``l_proj``, PWTP ENoPR).

  Without a ``config.joint`` section the objective is ``L2 + aux_loss_weight * L1``. With one, both
  gradients come from a single forward pass (``jax.vjp`` pulled back with (1, 0) and (0, 1)) and
  ``joint.combine_gradients`` mixes them (separate / constant alpha / scale scheduler Eq. 3.19 / MGDA
  Eq. 3.18, thesis Table 3.9); alpha, L1 and L2 are logged every step.

  ``config.optim.grad_accum_steps = k > 1`` splits the batch into k micro-batches (a ``lax.scan``; only
  one micro-batch's activations are alive at a time) and averages their losses and gradients before
  one optimiser update: the same update as the whole batch at once, except that BatchNorm normalises
  each micro-batch with its own statistics (and its running averages are updated k times).
  """
  if "box" in batch:  # config.data.crop_resize='step': the host sent crop boxes; resize and flip them here
    from vidjax.ops.resize import crop_resize_flip
    batch = {"video": crop_resize_flip(batch["video"], batch["box"], batch["flip"], config.data.crop_size),
             "label": batch["label"]}
  num_classes = config.model.num_classes
  labels = batch["label"]
  rng = jax.random.fold_in(jax.random.key(config.seed), state.step)
  joint_cfg = config.get("joint")
  accum = int(config.optim.get("grad_accum_steps", 1) or 1)
  w = config.optim.get("aux_loss_weight", 1.0)

  def grads_of(params, batch_stats, video_u8, y, key):
    """Losses (L1, L2), gradients (of the total, or of L1 and of L2 for joint training), logits, BN."""
    video = normalize(video_u8, config.data.mean, config.data.std)

    def losses(p):
      logits, mutated = _forward(p, batch_stats, video, key, model)
      l2 = objectives.cross_entropy(logits, y, num_classes, config.optim.label_smoothing)
      l1 = objectives.sown_losses(mutated.get("losses", {}))
      return (l1, l2), (logits, mutated.get("batch_stats", {}))

    if joint_cfg is None:
      def total(p):
        (l1, l2), aux = losses(p)
        return l2 + w * l1, ((l1, l2), aux)
      (_, ((l1, l2), (logits, new_bs))), g = jax.value_and_grad(total, has_aux=True)(params)
      return (l1, l2), (g,), logits, new_bs
    (l1, l2), pullback, (logits, new_bs) = jax.vjp(losses, params, has_aux=True)
    one, zero = jnp.ones((), l1.dtype), jnp.zeros((), l1.dtype)
    return (l1, l2), (pullback((one, zero))[0], pullback((zero, one))[0]), logits, new_bs

  if accum <= 1:
    (l1, l2), gs, logits, batch_stats = grads_of(state.params, state.batch_stats, batch["video"], labels, rng)
  else:
    if labels.shape[0] % accum:
      raise ValueError(f"batch {labels.shape[0]} does not split into optim.grad_accum_steps={accum} micro-batches")
    videos, ys = _micro_batches(batch["video"], accum), _micro_batches(labels, accum)

    def body(carry, xs):
      bs, sums = carry
      i, v, y = xs
      out = grads_of(state.params, bs, v, y, jax.random.fold_in(rng, i))
      (l1_i, l2_i), gs_i, logits_i, bs = out
      sums = jax.tree.map(jnp.add, sums, ((l1_i, l2_i), gs_i))
      return (bs, sums), logits_i

    zeros = jax.tree.map(jnp.zeros_like, jax.eval_shape(
        lambda: grads_of(state.params, state.batch_stats, videos[0], ys[0], rng)[:2]))
    (batch_stats, sums), logits = jax.lax.scan(body, (state.batch_stats, zeros),
                                               (jnp.arange(accum), videos, ys))
    (l1, l2), gs = jax.tree.map(lambda a: a / accum, sums)
    # back to the batch order: micro-batch i holds clips i, i + k, i + 2k, ...
    logits = jnp.swapaxes(logits, 0, 1).reshape((-1,) + logits.shape[2:])

  if joint_cfg is None:
    grads, alpha = gs[0], jnp.asarray(w, jnp.float32)
  else:
    strategy = joint.from_config(joint_cfg, total_steps)
    grads, alpha = joint.combine_gradients(
        strategy, gs[0], gs[1], state.step,
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
  keep = config.train.get("partial_bn_keep", "") if config.train.get("partial_bn", False) else ""
  if keep:  # TSN partial BN: the interceptor only needs to be active while the step is traced
    from vidjax.train import finetune
    inner = fn

    def fn(state, batch):
      with finetune.partial_bn(keep):
        return inner(state, batch)
  from vidjax.train import compiler
  return jax.jit(fn, in_shardings=(state_sharding, batch_sharding),
                 out_shardings=(state_sharding, None), donate_argnums=(0,),
                 compiler_options=compiler.step_options(config))
