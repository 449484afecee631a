"""The train step wires joint training (thesis Algorithm 1 / Eq. 3.18) exactly: checked against gradients
taken separately and mixed in NumPy from the equations."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from configs import dan_tsm_ssv1
from vidjax.models import registry
from vidjax.train import objectives, state as state_lib, step as step_lib


def tiny_dan_config(strategy):
  c = dan_tsm_ssv1.get_config()
  c.model.width, c.model.stage_sizes, c.model.num_classes, c.model.dropout = 0.0625, (1, 1, 1, 1), 4, 0.0
  c.model.num_segments = c.data.num_segments = 2
  c.model.pwtp.conv_setting = None
  c.model.pwtp.update(dict(kernel_size=3, stride=2, channels=4))
  c.data.frames_per_segment = 3
  c.data.crop_size = 16
  c.joint.strategy = strategy
  c.joint.alpha = 0.3
  return c


def numpy_mix(strategy, g1, g2, mask, alpha_const):
  """Eq. 3.18 alpha on the projection parameters; Algorithm 1 / Eq. 3.15 updates."""
  f1 = [np.asarray(a, np.float64) for a in jax.tree.leaves(g1)]
  f2 = [np.asarray(a, np.float64) for a in jax.tree.leaves(g2)]
  m = jax.tree.leaves(mask)
  if strategy == "mgda":
    num = sum(((b - a) * b).sum() for a, b, k in zip(f1, f2, m) if k)
    den = sum(((a - b) ** 2).sum() for a, b, k in zip(f1, f2, m) if k)
    alpha = float(np.clip(num / den, 0, 1))
    mixed = [alpha * a + (1 - alpha) * b if k else b for a, b, k in zip(f1, f2, m)]
  else:
    alpha = alpha_const
    mixed = [alpha * a + (1 - alpha) * b for a, b in zip(f1, f2)]
  return alpha, mixed


@pytest.mark.parametrize("strategy", ["mgda", "constant"])
def test_joint_step_equals_algorithm_1(strategy):
  c = tiny_dan_config(strategy)
  model = registry.build(c.model)
  shape = (2, 6, 16, 16, 3)
  tx = optax.sgd(1.0)  # the update is then minus the combined gradient
  st = state_lib.create(model, tx, shape, 0)
  rng = np.random.default_rng(0)
  batch = {"video": jnp.asarray(rng.integers(0, 255, shape), jnp.uint8), "label": jnp.asarray([1, 3])}
  new, metrics = step_lib.train_step(st, batch, model=model, tx=tx, config=c, total_steps=10)

  video = step_lib.normalize(batch["video"], c.data.mean, c.data.std)
  key = jax.random.fold_in(jax.random.key(c.seed), 0)

  def fwd(p):
    return model.apply({"params": p, "batch_stats": st.batch_stats}, video, train=True, rngs={"dropout": key},
                       mutable=["batch_stats", "losses"])

  g1 = jax.grad(lambda p: objectives.sown_losses(fwd(p)[1]["losses"]))(st.params)
  g2 = jax.grad(lambda p: objectives.cross_entropy(fwd(p)[0], batch["label"], 4))(st.params)
  mask = jax.tree_util.tree_map_with_path(
      lambda path, _: path[0].key == "representation", st.params)
  alpha, mixed = numpy_mix(strategy, g1, g2, mask, 0.3)
  assert float(metrics["alpha"]) == pytest.approx(alpha, rel=1e-4, abs=1e-6)
  got = [np.asarray(a) - np.asarray(b) for a, b in zip(jax.tree.leaves(st.params), jax.tree.leaves(new.params))]
  for g, want in zip(got, mixed):
    np.testing.assert_allclose(g, want, rtol=2e-3, atol=1e-6)
  # the classifier never sees the projection loss under MGDA (Algorithm 1, line 6)
  assert float(metrics["aux_loss"]) > 0
