"""Losses and metrics."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits, labels, num_classes: int, label_smoothing: float = 0.0):
  """Mean softmax cross-entropy with label smoothing ``eps``: targets ``(1 - eps) onehot + eps / K``."""
  targets = jax.nn.one_hot(labels, num_classes)
  if label_smoothing:
    targets = optax.smooth_labels(targets, label_smoothing)
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets).mean()


def topk_correct(logits, labels, k: int):
  """1.0 where the label is among the k largest logits."""
  k = min(k, logits.shape[-1])
  top = jax.lax.top_k(logits, k)[1]
  return jnp.any(top == labels[:, None], axis=-1).astype(jnp.float32)


def sown_losses(collection) -> jnp.ndarray:
  """Sum of every value a model sowed into its ``'losses'`` collection (0 if none)."""
  leaves = jax.tree.leaves(collection)
  if not leaves:
    return jnp.zeros((), jnp.float32)
  return sum(jnp.sum(jnp.asarray(x, jnp.float32)) for x in leaves)
