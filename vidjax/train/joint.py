"""Joint training of a projection loss L1 and the classification loss L2 (thesis section 3.5.4, Table 3.9).

API (pure, jit-able; works on sharded global arrays under ``jax.jit`` with shardings)
--------------------------------------------------------------------------------
::

    strategy = joint.from_config(config.joint, total_steps)           # a frozen, hashable JointStrategy
    mask = joint.projection_mask(params)                               # pytree of Python bools (static)
    # in the train step:
    (l2, aux), g2 = jax.value_and_grad(ce_loss, has_aux=True)(params)  # L2: classification
    l1, g1 = jax.value_and_grad(sum_of_sown_losses)(params)            # L1: sum of the 'losses' collection
    grads, alpha = joint.combine_gradients(strategy, g1, g2, step, mask)
    updates, opt_state = tx.update(grads, opt_state, params)           # any optax chain
    metrics = {"l1": l1, "l2": l2, "alpha": alpha}

(One forward can give both gradients: ``jax.vjp`` of ``params -> (l1, l2)`` pulled back with (1, 0) and
(0, 1).) ``combine_gradients(strategy, grads_l1, grads_l2, step, is_projection_param_mask) -> (grads,
alpha)``: ``grads_l1`` / ``grads_l2`` are gradient pytrees of identical structure (L1 gradients are zero
on parameters L1 does not depend on), ``step`` the 0-based iteration (int or traced int32),
``is_projection_param_mask`` a pytree of the same structure whose leaves are bools (True for the
projection parameters Theta^1: PWTP / TSP). ``alpha`` is a float32 scalar to log: the weight of L1.

Strategies (``JointStrategy.name``), Theta^1 = masked (projection) parameters, Theta^2 = the rest:

* ``'separate'``  -- Table 3.9 "Separate training": Theta^1 <- grad L1 only, Theta^2 <- grad L2 only
  (the classifier never changes the projection); alpha = 1.
* ``'constant'``  -- Eq. 3.15 with a fixed alpha (Table 3.9: 0, 0.5, 0.9):
  Theta^1 <- alpha g1 + (1 - alpha) g2; Theta^2 <- alpha g1 + (1 - alpha) g2 (the gradient of the
  Eq. 3.15 objective; g1 = 0 on a DAN backbone, so the backbone gets (1 - alpha) g2).
* ``'scheduler'`` -- Eq. 3.15 with alpha from the scale scheduler Eq. 3.19 (:func:`scale_schedule`).
* ``'mgda'``      -- Eq. 3.18 / Algorithm 1: alpha = clip(((g2 - g1)^T g2) / ||g1 - g2||^2, 0, 1) with
  g1, g2 restricted to Theta^1 (inner products over the masked leaves only, float32); Theta^1 <- alpha g1
  + (1 - alpha) g2; Theta^2 <- g2 (line 6 of Algorithm 1). If g1 = g2 on Theta^1 (zero denominator) every
  alpha gives the same update and alpha = 0.5 is returned.
* ``'weighted'``  -- Eq. 3.6 (TeSNet): all parameters <- g2 + beta g1 (beta = 10, section 3.3.1);
  the returned "alpha" is beta.

``backbone_grad`` ('auto' | 'objective' | 'l2') overrides how Theta^2 is updated for 'constant',
'scheduler' and 'mgda': 'objective' = alpha g1 + (1 - alpha) g2 (Eq. 3.15), 'l2' = g2 (Algorithm 1);
'auto' = 'l2' for MGDA and 'objective' for the fixed/scheduled scales. The thesis has no code; this
is the literal reading of Eq. 3.15 and Algorithm 1.

Scale scheduler (Eq. 3.19), m = step + 1 (1-based iteration: the printed formula takes log m), M =
``total_steps``, 0 < gamma < 1, 0 <= lambda <= 1 (the thesis' "gamma >= 1" is a typo: Table 3.9 uses
gamma = 0.1 .. 0.5), theta = arccos(2 lambda - 1)::

    m <  gamma M:  alpha = 1/2 (1 + cos(pi log_b m)),  b = (gamma M)^(pi / theta)   [alpha(1) = 1, alpha(gamma M) = lambda]
    m >= gamma M:  alpha = lambda/2 (1 + cos(pi log_{(1-gamma) M} m))                ('printed', default)
                   alpha = lambda/2 (1 + cos(pi log_{M - gamma M + 1} (m - gamma M + 1)))   ('shifted')

The printed second branch is not continuous at m = gamma M (it starts below lambda) and passes through 0
at m = (1 - gamma) M; ``schedule_form='shifted'`` is our continuous reading (lambda at gamma M, 0 at M).
:func:`scale_schedule_curve` returns the whole schedule as a NumPy array (Fig. 3.12).
"""
from __future__ import annotations

import dataclasses
import math
import re

import jax
import jax.numpy as jnp
import numpy as np

STRATEGIES = ("separate", "constant", "scheduler", "mgda", "weighted")
SCHEDULE_FORMS = ("printed", "shifted")
# Theta^1: DAN's representation module and every TSP of a TeSNet.
DEFAULT_PROJECTION_PATTERN = r"(^|/)(representation|tsp)(/|$)"


@dataclasses.dataclass(frozen=True)
class JointStrategy:
  name: str = "mgda"
  alpha: float = 0.5  # 'constant'
  gamma: float = 0.2  # 'scheduler' (Eq. 3.19)
  lam: float = 0.3  # 'scheduler' lambda
  total_steps: int = 0  # 'scheduler' M
  schedule_form: str = "printed"
  beta: float = 10.0  # 'weighted' (Eq. 3.6)
  backbone_grad: str = "auto"  # 'auto' | 'objective' | 'l2'
  eps: float = 1e-20  # MGDA: ||g1 - g2||^2 below this counts as zero

  def __post_init__(self):
    if self.name not in STRATEGIES:
      raise ValueError(f"joint strategy must be one of {STRATEGIES}, got {self.name!r}")
    if self.backbone_grad not in ("auto", "objective", "l2"):
      raise ValueError(f"backbone_grad must be 'auto', 'objective' or 'l2', got {self.backbone_grad!r}")
    if self.name == "constant" and not 0.0 <= self.alpha <= 1.0:
      raise ValueError(f"constant alpha must be in [0, 1], got {self.alpha}")
    if self.name == "scheduler":
      if self.total_steps <= 0:
        raise ValueError("the scale scheduler needs total_steps > 0")
      _check_schedule(self.gamma, self.lam, self.schedule_form)


def from_config(cfg, total_steps: int = 0) -> JointStrategy:
  """``config.joint`` (strategy, alpha, gamma, lam, schedule_form, beta, backbone_grad) -> JointStrategy."""
  g = cfg.get
  return JointStrategy(name=g("strategy", "mgda"), alpha=float(g("alpha", 0.5)), gamma=float(g("gamma", 0.2)),
                       lam=float(g("lam", 0.3)), total_steps=int(total_steps),
                       schedule_form=g("schedule_form", "printed"), beta=float(g("beta", 10.0)),
                       backbone_grad=g("backbone_grad", "auto"))


def _check_schedule(gamma, lam, form):
  if not 0.0 < gamma < 1.0:
    raise ValueError(f"scale scheduler gamma must be in (0, 1), got {gamma}")
  if not 0.0 <= lam <= 1.0:
    raise ValueError(f"scale scheduler lambda must be in [0, 1], got {lam}")
  if form not in SCHEDULE_FORMS:
    raise ValueError(f"schedule_form must be one of {SCHEDULE_FORMS}, got {form!r}")


def _safe_div(a, b):
  ok = b != 0
  return jnp.where(ok, a / jnp.where(ok, b, 1.0), 0.0)


def scale_schedule(step, total_steps: int, gamma: float, lam: float, form: str = "printed"):
  """Eq. 3.19: alpha at 0-based ``step`` (jnp, jit-able, float32 scalar or array)."""
  _check_schedule(gamma, lam, form)
  m = jnp.asarray(step, jnp.float32) + 1.0
  big_m = float(total_steps)
  gm = gamma * big_m
  theta = math.acos(2.0 * lam - 1.0)  # in [0, pi]
  # log_b m with b = (gamma M)^(pi / theta)  ==  theta * ln m / (pi * ln(gamma M))
  first = 0.5 * (1.0 + jnp.cos(jnp.pi * _safe_div(theta * jnp.log(m), math.pi * math.log(max(gm, 1e-30)))))
  if form == "printed":
    expo = _safe_div(jnp.log(m), math.log(max((1.0 - gamma) * big_m, 1e-30)))
  else:
    expo = _safe_div(jnp.log(jnp.maximum(m - gm + 1.0, 1.0)), math.log(max(big_m - gm + 1.0, 1e-30)))
  second = 0.5 * lam * (1.0 + jnp.cos(jnp.pi * expo))
  return jnp.where(m < gm, first, second).astype(jnp.float32)


def scale_schedule_curve(total_steps: int, gamma: float, lam: float, form: str = "printed") -> np.ndarray:
  """The whole schedule ``alpha(step)`` for ``step = 0 .. total_steps - 1`` (to plot Fig. 3.12)."""
  return np.asarray(scale_schedule(np.arange(total_steps), total_steps, gamma, lam, form))


def projection_mask(params, pattern: str = DEFAULT_PROJECTION_PATTERN):
  """Pytree of Python bools: True where the '/'-joined parameter path matches ``pattern`` (Theta^1)."""
  rx = re.compile(pattern)

  def key_str(k):
    for attr in ("key", "name", "idx"):
      if hasattr(k, attr):
        return str(getattr(k, attr))
    return str(k)

  return jax.tree_util.tree_map_with_path(
      lambda path, _: bool(rx.search("/".join(key_str(k) for k in path))), params)


def _static_bool(m):
  return isinstance(m, (bool, np.bool_))


def _masked_dot(a_tree, b_tree, mask):
  """Sum over the masked leaves of ``<a, b>`` in float32."""
  total = jnp.zeros((), jnp.float32)
  for a, b, m in zip(jax.tree.leaves(a_tree), jax.tree.leaves(b_tree), jax.tree.leaves(mask)):
    if _static_bool(m) and not m:
      continue
    prod = jnp.sum(jnp.asarray(a, jnp.float32) * jnp.asarray(b, jnp.float32))
    total = total + (prod if _static_bool(m) else jnp.where(m, prod, 0.0))
  return total


def mgda_alpha(grads_l1, grads_l2, mask, eps: float = 1e-20):
  """Eq. 3.18: the minimiser over [0, 1] of ``||alpha g1 + (1 - alpha) g2||^2`` on the masked params."""
  d11 = _masked_dot(grads_l1, grads_l1, mask)
  d12 = _masked_dot(grads_l1, grads_l2, mask)
  d22 = _masked_dot(grads_l2, grads_l2, mask)
  denom = d11 - 2.0 * d12 + d22  # ||g1 - g2||^2
  ok = denom > eps
  alpha = jnp.where(ok, (d22 - d12) / jnp.where(ok, denom, 1.0), 0.5)
  return jnp.clip(alpha, 0.0, 1.0)


def combine_gradients(strategy: JointStrategy, grads_l1, grads_l2, step, is_projection_param_mask):
  """Joint update direction and alpha (see the module docstring). Pure and jit-able."""
  s = strategy
  mask = is_projection_param_mask
  if jax.tree.structure(grads_l1) != jax.tree.structure(grads_l2):
    raise ValueError("grads_l1 and grads_l2 must have the same pytree structure")
  if len(jax.tree.leaves(mask)) != len(jax.tree.leaves(grads_l2)):
    raise ValueError("is_projection_param_mask must have one bool per gradient leaf")

  if s.name == "weighted":
    beta = jnp.float32(s.beta)
    grads = jax.tree.map(lambda a, b: (b + s.beta * a.astype(b.dtype)).astype(b.dtype), grads_l1, grads_l2)
    return grads, beta

  if s.name == "separate":
    alpha = jnp.float32(1.0)
  elif s.name == "constant":
    alpha = jnp.float32(s.alpha)
  elif s.name == "scheduler":
    alpha = scale_schedule(step, s.total_steps, s.gamma, s.lam, s.schedule_form)
  else:  # mgda
    alpha = mgda_alpha(grads_l1, grads_l2, mask, s.eps)

  mode = s.backbone_grad
  if mode == "auto":
    mode = "l2" if s.name in ("mgda", "separate") else "objective"
  if s.name == "separate":
    mode = "l2"

  def leaf(g1, g2, m):
    a = alpha.astype(g2.dtype)
    mixed = a * g1.astype(g2.dtype) + (1 - a) * g2
    other = g2 if mode == "l2" else mixed
    if _static_bool(m):
      return mixed if m else other
    return jnp.where(m, mixed, other)

  flat1 = jax.tree.leaves(grads_l1)
  flat2, treedef = jax.tree.flatten(grads_l2)
  flatm = jax.tree.leaves(mask)
  out = [leaf(a, b, m) for a, b, m in zip(flat1, flat2, flatm)]
  return jax.tree.unflatten(treedef, out), alpha
