"""SGD with the reference's parameter groups and learning-rate schedule (REFERENCE.md section 10).

* Schedule, per iteration with ``e = step / steps_per_epoch``: linear warm-up from ``lr / 10`` to
  ``lr`` over ``warmup_epochs``, then ``0.5 * lr * (1 + cos(pi * (e - w) / (E - w)))``.
* Update, as ``torch.optim.SGD``: ``d = clip(g) + wd * m_wd * p``; ``buf = momentum * buf + d``;
  ``p -= lr(e) * m_lr * buf``. Gradients are clipped by their global norm first (``--gd 20``).
* Groups: ``config.optim.param_groups`` rules ``"name: regex | kinds | lr_mult | wd_mult"`` matched in
  order against the ``/``-joined parameter path; kinds are ``kernel``, ``bias`` (of a conv/dense) and
  ``bn`` (scale and bias of a normalisation layer), ``*`` for any.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util


@dataclasses.dataclass(frozen=True)
class GroupRule:
  name: str
  pattern: re.Pattern
  kinds: tuple[str, ...]
  lr_mult: float
  wd_mult: float


def parse_rules(rules) -> list[GroupRule]:
  out = []
  for r in rules:
    try:
      name, rest = r.split(":", 1)
      regex, kinds, lr, wd = (x.strip() for x in rest.rsplit("|", 3))
      out.append(GroupRule(name.strip(), re.compile(regex), tuple(k.strip() for k in kinds.split(",")),
                           float(lr), float(wd)))
    except (ValueError, re.error) as e:
      raise ValueError(f"config.optim.param_groups: cannot parse {r!r} ({e}); expected "
                       f"'name: regex | kinds | lr_mult | wd_mult'") from None
  if not out:
    raise ValueError("config.optim.param_groups is empty")
  return out


def param_kinds(params) -> dict[tuple, str]:
  """``path -> kernel | bias | bn`` from the leaf names: a ``bias`` beside a ``scale`` is a norm's."""
  flat = traverse_util.flatten_dict(params)
  kinds = {}
  for path in flat:
    leaf, parent = path[-1], path[:-1]
    if leaf == "scale":
      kinds[path] = "bn"
    elif leaf == "bias":
      kinds[path] = "bn" if parent + ("scale",) in flat else "bias"
    else:
      kinds[path] = "kernel"
  return kinds


def group_labels(params, rules) -> Any:
  """A pytree like ``params`` holding each parameter's group name."""
  rules = parse_rules(rules) if not isinstance(rules[0], GroupRule) else rules
  kinds = param_kinds(params)
  labels = {}
  for path, kind in kinds.items():
    key = "/".join(str(p) for p in path)
    for r in rules:
      if ("*" in r.kinds or kind in r.kinds) and r.pattern.search(key):
        labels[path] = r.name
        break
    else:
      raise ValueError(f"parameter {key} ({kind}) matches no rule of config.optim.param_groups")
  return traverse_util.unflatten_dict(labels)


def lr_schedule(base_lr: float, steps_per_epoch: int, epochs: float, warmup_epochs: float = 0.0):
  """The reference's per-iteration schedule as a function of the optimiser step."""
  def schedule(step):
    e = jnp.asarray(step, jnp.float32) / steps_per_epoch
    warm = base_lr / 10 + (base_lr - base_lr / 10) * e / max(warmup_epochs, 1e-12)
    cos = 0.5 * base_lr * (1 + jnp.cos(math.pi * (e - warmup_epochs) / (epochs - warmup_epochs)))
    return jnp.where(e < warmup_epochs, warm, cos)
  return schedule


def make_optimizer(config, params, steps_per_epoch: int) -> optax.GradientTransformation:
  o = config.optim
  rules = parse_rules(o.param_groups)
  schedule = lr_schedule(o.lr, steps_per_epoch, o.epochs, o.warmup_epochs)
  used = set(jax.tree.leaves(group_labels(params, rules)))
  transforms = {}
  for r in rules:
    if r.name not in used:
      continue
    parts = []
    if r.wd_mult and o.weight_decay:
      parts.append(optax.add_decayed_weights(o.weight_decay * r.wd_mult))
    parts.append(optax.trace(decay=o.momentum, nesterov=False))
    parts.append(optax.scale_by_schedule(lambda s, m=r.lr_mult: -m * schedule(s)))
    transforms[r.name] = optax.chain(*parts)
  tx = optax.multi_transform(transforms, lambda p: group_labels(p, rules))
  if o.grad_clip and o.grad_clip > 0:
    tx = optax.chain(optax.clip_by_global_norm(o.grad_clip), tx)
  return tx
