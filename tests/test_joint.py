"""Joint training (thesis section 3.5.4, Table 3.9): MGDA (Eq. 3.17-3.18, Algorithm 1), the scale
scheduler (Eq. 3.19), constant / separate / Eq. 3.6 weighting, against NumPy written from the equations."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vidjax.train import joint


def _grads(seed, scale1=1.0, scale2=1.0, corr=0.0):
  """Random gradient pytrees: 'representation' = PWTP (Theta^1), 'backbone' = Theta^2."""
  rng = np.random.default_rng(seed)
  shapes = {"representation": {"conv": {"kernel": (3, 3, 2, 4), "bias": (4,)}, "mlp_in": {"kernel": (6, 12)}},
            "backbone": {"stem": {"conv1": {"kernel": (3, 3, 4, 8)}}, "head": {"fc": {"kernel": (8, 5)}}}}
  g2 = jax.tree.map(lambda s: rng.normal(size=s).astype(np.float32) * scale2, shapes,
                    is_leaf=lambda v: isinstance(v, tuple))
  g1 = jax.tree.map(lambda b: (corr * b + rng.normal(size=b.shape) * scale1).astype(np.float32), g2)
  return g1, g2


def _flat_masked(tree, mask):
  return np.concatenate([np.ravel(a) for a, m in zip(jax.tree.leaves(tree), jax.tree.leaves(mask)) if m])


CASES = [(0, 1.0, 1.0, 0.0), (1, 0.3, 2.0, 0.0), (2, 3.0, 0.5, 0.5), (3, 1.0, 1.0, 0.9), (4, 0.1, 1.0, 3.0),
         (5, 2.0, 0.2, -1.0)]


@pytest.mark.parametrize("seed,s1,s2,corr", CASES)
def test_mgda_alpha_minimises_eq_3_17_brute_force(seed, s1, s2, corr):
  """Eq. 3.18 alpha = argmin_{alpha in [0,1]} ||alpha g1 + (1 - alpha) g2||^2 (Eq. 3.17) on Theta^1 only,
  against a 200,001-point grid (clipped cases included)."""
  g1, g2 = _grads(seed, s1, s2, corr)
  mask = joint.projection_mask(g2)
  alpha = float(joint.mgda_alpha(g1, g2, mask))
  a = _flat_masked(g1, mask).astype(np.float64)
  b = _flat_masked(g2, mask).astype(np.float64)
  grid = np.linspace(0.0, 1.0, 200_001)
  # ||alpha a + (1 - alpha) b||^2 expanded over the grid without forming every combination.
  obj = grid ** 2 * (a @ a) + 2 * grid * (1 - grid) * (a @ b) + (1 - grid) ** 2 * (b @ b)
  best = grid[np.argmin(obj)]
  assert abs(alpha - best) <= 2e-5, (alpha, best)
  direct = np.sum((alpha * a + (1 - alpha) * b) ** 2)
  assert direct <= obj.min() * (1 + 1e-5) + 1e-9


def test_mgda_alpha_clipping_and_degenerate_cases():
  """Eq. 3.18 clip to [0, 1]: g1 = 2 g2 -> 0 (alpha' < 0); g2 = 2 g1 -> 1; g1 = g2 -> any (0.5)."""
  g1, g2 = _grads(7)
  mask = joint.projection_mask(g2)
  twice = jax.tree.map(lambda v: 2 * v, g2)
  assert float(joint.mgda_alpha(twice, g2, mask)) == 0.0
  assert float(joint.mgda_alpha(g1, jax.tree.map(lambda v: 2 * v, g1), mask)) == 1.0
  assert float(joint.mgda_alpha(g2, g2, mask)) == 0.5


def _np_algorithm_1(params, g1, g2, mask, lr):
  """Algorithm 1 written out: alpha by Eq. 3.18 on Theta^1, Theta^1 -= lr (alpha g1 + (1 - alpha) g2),
  Theta^2 -= lr g2."""
  a = _flat_masked(g1, mask).astype(np.float64)
  b = _flat_masked(g2, mask).astype(np.float64)
  alpha = float(np.clip((b - a) @ b / np.sum((a - b) ** 2), 0.0, 1.0))
  new = jax.tree.map(lambda p, x, y, m: p - lr * (alpha * x + (1 - alpha) * y) if m else p - lr * y,
                     params, g1, g2, mask)
  return new, alpha


@pytest.mark.parametrize("traced_mask", [False, True])
def test_mgda_update_equals_algorithm_1(traced_mask):
  """combine_gradients('mgda') + SGD(lr) under jit = Algorithm 1 lines 3-6 in NumPy (mask static or traced)."""
  g1, g2 = _grads(8, 0.7, 1.3, 0.3)
  params = jax.tree.map(lambda v: np.full_like(v, 0.5), g2)
  mask = joint.projection_mask(g2)
  lr = 0.1
  strategy = joint.JointStrategy("mgda")
  tx = optax.sgd(lr)

  def step(params, g1, g2, m):
    grads, alpha = joint.combine_gradients(strategy, g1, g2, jnp.int32(0), m)
    updates, _ = tx.update(grads, tx.init(params), params)
    return optax.apply_updates(params, updates), alpha

  if traced_mask:
    new, alpha = jax.jit(step)(params, g1, g2, jax.tree.map(jnp.asarray, mask))
  else:
    new, alpha = jax.jit(lambda p, a, b: step(p, a, b, mask))(params, g1, g2)
  ref, ref_alpha = _np_algorithm_1(params, g1, g2, mask, lr)
  assert 0.0 < ref_alpha < 1.0
  np.testing.assert_allclose(float(alpha), ref_alpha, rtol=1e-5)
  for x, y in zip(jax.tree.leaves(new), jax.tree.leaves(ref)):
    np.testing.assert_allclose(np.asarray(x), y, rtol=1e-5, atol=1e-6)


def test_constant_separate_and_weighted_strategies():
  """Table 3.9 rows: constant alpha (Eq. 3.15 gradient on every parameter), separate training
  (Theta^1 <- g1, Theta^2 <- g2), and TeSNet's Eq. 3.6 (g2 + beta g1 everywhere)."""
  g1, g2 = _grads(9)
  mask = joint.projection_mask(g2)
  for alpha in (0.0, 0.5, 0.9):
    out, a = joint.combine_gradients(joint.JointStrategy("constant", alpha=alpha), g1, g2, 0, mask)
    assert float(a) == pytest.approx(alpha)
    for x, y1, y2 in zip(jax.tree.leaves(out), jax.tree.leaves(g1), jax.tree.leaves(g2)):
      np.testing.assert_allclose(np.asarray(x), alpha * y1 + (1 - alpha) * y2, rtol=1e-6, atol=1e-7)
  out, _ = joint.combine_gradients(joint.JointStrategy("separate"), g1, g2, 0, mask)
  for x, y1, y2, m in zip(*(jax.tree.leaves(t) for t in (out, g1, g2, mask))):
    np.testing.assert_array_equal(np.asarray(x), y1 if m else y2)
  out, beta = joint.combine_gradients(joint.JointStrategy("weighted", beta=10.0), g1, g2, 0, mask)
  assert float(beta) == 10.0
  for x, y1, y2 in zip(jax.tree.leaves(out), jax.tree.leaves(g1), jax.tree.leaves(g2)):
    np.testing.assert_allclose(np.asarray(x), y2 + 10.0 * y1, rtol=1e-6, atol=1e-6)
  # Algorithm-1 style backbone for a constant alpha.
  out, _ = joint.combine_gradients(joint.JointStrategy("constant", alpha=0.5, backbone_grad="l2"), g1, g2, 0, mask)
  for x, y1, y2, m in zip(*(jax.tree.leaves(t) for t in (out, g1, g2, mask))):
    np.testing.assert_allclose(np.asarray(x), 0.5 * y1 + 0.5 * y2 if m else y2, rtol=1e-6)


def _np_eq_3_19(m, big_m, gamma, lam):
  """Eq. 3.19 as printed: log base [(gamma M)^(pi / arccos(2 lambda - 1))] before gamma M,
  log base [(1 - gamma) M] after; m is the 1-based iteration."""
  if m < gamma * big_m:
    base = (gamma * big_m) ** (np.pi / np.arccos(2 * lam - 1))
    return 0.5 * (1 + np.cos(np.pi * np.log(m) / np.log(base)))
  return 0.5 * lam * (1 + np.cos(np.pi * np.log(m) / np.log((1 - gamma) * big_m)))


@pytest.mark.parametrize("gamma,lam", [(0.1, 0.1), (0.2, 0.3), (0.5, 0.3)])
def test_scale_scheduler_eq_3_19(gamma, lam):
  """Table 3.9's (gamma, lambda) settings: the schedule equals Eq. 3.19; alpha(1) = 1 and the first branch
  reaches lambda at m = gamma M; the 'shifted' reading is continuous (lambda at gamma M) and ends at 0."""
  big_m = 1000
  curve = joint.scale_schedule_curve(big_m, gamma, lam)
  ref = np.array([_np_eq_3_19(m, big_m, gamma, lam) for m in range(1, big_m + 1)])
  np.testing.assert_allclose(curve, ref, rtol=1e-4, atol=1e-5)
  assert curve[0] == pytest.approx(1.0)
  first = lambda m: 0.5 * (1 + np.cos(np.arccos(2 * lam - 1) * np.log(m) / np.log(gamma * big_m)))
  assert first(gamma * big_m) == pytest.approx(lam)
  shifted = joint.scale_schedule_curve(big_m, gamma, lam, form="shifted")
  k = int(gamma * big_m) - 1  # step index of m = gamma M
  assert shifted[k] == pytest.approx(lam, abs=1e-6) and shifted[-1] == pytest.approx(0.0, abs=1e-6)
  assert np.all(np.diff(shifted) <= 1e-6)  # monotone non-increasing
  # Used as a strategy, alpha is the schedule at the step (jit, traced step).
  g1, g2 = _grads(10)
  strat = joint.JointStrategy("scheduler", gamma=gamma, lam=lam, total_steps=big_m)
  f = jax.jit(lambda s: joint.combine_gradients(strat, g1, g2, s, joint.projection_mask(g2))[1])
  for step in (0, 57, int(gamma * big_m), 800):
    assert float(f(jnp.int32(step))) == pytest.approx(ref[step], rel=1e-4, abs=1e-6)


def test_projection_mask_selects_representation_and_tsp():
  """Theta^1 = DAN's 'representation/...' and every TeSNet 'tsp' module; nothing else."""
  params = {"representation": {"conv": {"kernel": 0}}, "backbone": {"conv2d_1a_insert": {"tsp": {"w1": {"kernel": 0}}},
                                                                     "head": {"fc": {"kernel": 0}},
                                                                     "tspx": {"kernel": 0}}}
  m = joint.projection_mask(params)
  assert m["representation"]["conv"]["kernel"] is True
  assert m["backbone"]["conv2d_1a_insert"]["tsp"]["w1"]["kernel"] is True
  assert m["backbone"]["head"]["fc"]["kernel"] is False and m["backbone"]["tspx"]["kernel"] is False


def test_invalid_strategies_raise():
  with pytest.raises(ValueError):
    joint.JointStrategy("adaptive")
  with pytest.raises(ValueError):
    joint.JointStrategy("scheduler", total_steps=0)
  with pytest.raises(ValueError):
    joint.JointStrategy("constant", alpha=1.5)


def test_gradients_of_sown_enopr_and_classification_through_dan():
  """Section 3.5.4 with the real modules: L1 = the sown ENoPR depends on the PWTP parameters only (its
  gradient is exactly 0 on the backbone), L2 reaches both; MGDA combines them into finite updates."""
  import flax.linen as nn

  from vidjax.models.dan import DAN
  from vidjax.modules.projection import PixelWiseTemporalProjection

  class TinyBackbone(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):  # (N, S, H, W, C) -> (N, 3)
      return nn.Dense(3, name="fc")(nn.relu(nn.Conv(4, (3, 3), name="conv")(x)).mean(axis=(1, 2, 3)))

  model = DAN(PixelWiseTemporalProjection(kernel_size=3, stride=2, channels=4), TinyBackbone(), num_segments=2)
  x = jnp.asarray(np.random.default_rng(11).normal(size=(2, 8, 8, 8, 3)), jnp.float32)
  labels = jnp.array([0, 2])
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)
  rng = np.random.default_rng(12)
  v = jax.tree.map(lambda l: jnp.asarray(rng.uniform(0.5, 1.0, l.shape) * rng.choice([-1, 1], l.shape),
                                         jnp.float32), shapes)
  v["batch_stats"] = jax.tree.map(jnp.abs, v["batch_stats"])  # positive running variances

  def losses(params):
    logits, st = model.apply({"params": params, "batch_stats": v["batch_stats"]}, x, train=True,
                             mutable=["losses", "batch_stats"])
    l1 = sum(jax.tree.leaves(st["losses"]))
    l2 = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return l1, l2

  @jax.jit
  def grads(params):  # one forward, two pullbacks
    (l1, l2), pull = jax.vjp(losses, params)
    return pull((jnp.ones_like(l1), jnp.zeros_like(l2)))[0], pull((jnp.zeros_like(l1), jnp.ones_like(l2)))[0]

  g1, g2 = grads(v["params"])
  mask = joint.projection_mask(v["params"])
  assert any(jax.tree.leaves(mask)) and not all(jax.tree.leaves(mask))
  for a, m in zip(jax.tree.leaves(g1), jax.tree.leaves(mask)):
    if not m:
      assert np.all(np.asarray(a) == 0.0)
  assert sum(float(jnp.sum(a * a)) for a, m in zip(jax.tree.leaves(g1), jax.tree.leaves(mask)) if m) > 0
  assert sum(float(jnp.sum(a * a)) for a, m in zip(jax.tree.leaves(g2), jax.tree.leaves(mask)) if m) > 0
  combined, alpha = jax.jit(lambda a, b: joint.combine_gradients(joint.JointStrategy("mgda"), a, b, 0, mask))(g1, g2)
  assert 0.0 <= float(alpha) <= 1.0
  assert all(np.all(np.isfinite(np.asarray(a))) for a in jax.tree.leaves(combined))
  np.testing.assert_array_equal(np.asarray(combined["backbone"]["fc"]["kernel"]),
                                np.asarray(g2["backbone"]["fc"]["kernel"]))
