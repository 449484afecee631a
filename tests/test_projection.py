"""Chapter 3 projections: ops and modules against NumPy written from the thesis equations.

Eq. 3.1-3.5 (TSP), Eq. 3.7-3.13 (PWTP), Table 3.13 / 3.12 parameter and MAC counts, and the Table 3.12
baselines (Dynamic Image: Bilen et al. approximate rank pooling; RGB difference).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from vidjax.modules import projection as M
from vidjax.ops import projection as P
from vidjax.tools import flops


def _lstsq(a, x):
  return np.linalg.lstsq(a, x, rcond=None)[0]


def _random_variables(mod, x, seed, scale=0.3):
  """Variables of ``mod`` with the shapes of its init (eval_shape: no compile) and random values."""
  shapes = jax.eval_shape(lambda: mod.init(jax.random.key(0), jnp.zeros(x.shape, jnp.float32)))
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = str(path[-1].key)
    if name == "var":
      return jnp.asarray(rng.uniform(0.5, 2.0, leaf.shape), jnp.float32)
    if name == "scale":
      return jnp.asarray(1 + 0.1 * rng.normal(size=leaf.shape), jnp.float32)
    return jnp.asarray(rng.uniform(-scale, scale, leaf.shape), jnp.float32)
  return jax.tree_util.tree_map_with_path(fill, shapes)


def _apply(mod, **kw):
  return jax.jit(lambda v, x: mod.apply(v, x, mutable=["losses", "batch_stats"], **kw))


# ----------------------------------------------------------------------------------------------- ops


@pytest.mark.parametrize("solver", ["cholesky", "qr", "pinv"])
@pytest.mark.parametrize("d", [1, 3])
def test_project_onto_columns_matches_lstsq(solver, d):
  """Eq. 3.4 / 3.7: y = (A^T A)^-1 A^T x equals numpy.linalg.lstsq; the residual is orthogonal to A."""
  rng = np.random.default_rng(0)
  a = rng.normal(size=(2, 3, 7, d))
  x = rng.normal(size=(2, 3, 7, 5))
  y = np.asarray(P.project_onto_columns(a, x, solver=solver))
  ref = np.stack([np.stack([_lstsq(a[i, j], x[i, j]) for j in range(3)]) for i in range(2)])
  np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)
  p = np.asarray(P.projection_residual(a, x, solver=solver))
  np.testing.assert_allclose(p, x - a @ ref, atol=1e-5)
  np.testing.assert_allclose(np.swapaxes(a, -1, -2) @ p, 0.0, atol=1e-4)  # A^T (x - A y) = 0


def test_project_onto_columns_broadcasts_shared_basis():
  """One A per clip shared by many vectors (TSP, Eq. 3.4) and one A per pixel (PWTP, Eq. 3.7)."""
  rng = np.random.default_rng(1)
  a = rng.normal(size=(4, 10, 3))
  x = rng.normal(size=(4, 10, 60))
  y = np.asarray(P.project_onto_columns(a, x))
  for i in range(4):
    np.testing.assert_allclose(y[i], _lstsq(a[i], x[i]), rtol=1e-4, atol=1e-5)


def test_rank_deficient_basis_error_ridge_and_pinv():
  """A with dependent columns: clear error; ridge = Tikhonov solve; pinv = lstsq minimum-norm solution."""
  rng = np.random.default_rng(2)
  a = rng.normal(size=(6, 2))
  a = np.concatenate([a, a[:, :1] * 2.0], axis=1)[None]  # third column = 2 x first
  x = rng.normal(size=(1, 6, 4))
  with pytest.raises(ValueError, match="rank-deficient"):
    P.project_onto_columns(a, x)
  with pytest.raises(ValueError, match="rank-deficient"):
    P.project_onto_columns(a, x, solver="qr")
  lam = 0.1
  y = np.asarray(P.project_onto_columns(a, x, ridge=lam))
  ref = np.linalg.solve(a[0].T @ a[0] + lam * np.eye(3), a[0].T @ x[0])
  np.testing.assert_allclose(y[0], ref, rtol=1e-4, atol=1e-5)
  y = np.asarray(P.project_onto_columns(a, x, solver="pinv"))
  np.testing.assert_allclose(y[0], _lstsq(a[0], x[0]), rtol=1e-4, atol=1e-4)
  # Under jit the check cannot run: the regularised solve stays finite.
  y = jax.jit(lambda a, x: P.project_onto_columns(a, x, ridge=lam))(a, x)
  assert np.all(np.isfinite(np.asarray(y)))


def test_temporal_relation_descriptor_eq_3_9():
  """u_i = {x~^{t1} . x~^{t2} / C' : t1 < t2} in ascending (t1, t2) order, length T(T-1)/2."""
  rng = np.random.default_rng(3)
  xt = rng.normal(size=(2, 3, 5, 4))  # (..., T=5, C'=4)
  u = np.asarray(P.temporal_relation_descriptor(xt))
  ref = []
  for t1 in range(5):
    for t2 in range(t1 + 1, 5):
      ref.append(np.sum(xt[..., t1, :] * xt[..., t2, :], axis=-1) / 4)
  np.testing.assert_allclose(u, np.stack(ref, axis=-1), rtol=1e-5, atol=1e-6)
  assert u.shape[-1] == 10


def test_dynamic_image_approximate_rank_pooling():
  """Bilen et al.: alpha_t = sum_{tau=t}^{T} (2 tau - T - 1) / tau (their reference code's loop form)."""
  for t in (2, 6, 10):
    ref = np.array([sum((2 * tau - t - 1) / tau for tau in range(i, t + 1)) for i in range(1, t + 1)])
    np.testing.assert_allclose(P.approximate_rank_pooling_weights(t), ref, rtol=1e-12)
  rng = np.random.default_rng(4)
  x = rng.normal(size=(2, 6, 4, 4, 3)).astype(np.float32)
  w = [sum((2 * tau - 7) / tau for tau in range(i, 7)) for i in range(1, 7)]
  ref = sum(w[i] * x[:, i] for i in range(6))
  out = M.DynamicImage().apply({}, jnp.asarray(x))
  np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-5, atol=1e-5)


def test_rgb_difference_stack_and_sum():
  """TSN RGB difference: x_{t+1} - x_t, stacked frame-major on channels or summed."""
  rng = np.random.default_rng(5)
  x = rng.normal(size=(2, 4, 3, 3, 3)).astype(np.float32)
  diffs = [x[:, t + 1] - x[:, t] for t in range(3)]
  out = np.asarray(M.RGBDifference("stack").apply({}, jnp.asarray(x)))
  np.testing.assert_allclose(out, np.concatenate(diffs, axis=-1), atol=1e-6)
  out = np.asarray(M.RGBDifference("sum").apply({}, jnp.asarray(x)))
  np.testing.assert_allclose(out, x[:, 3] - x[:, 0], atol=1e-5)


# ----------------------------------------------------------------------------------------------- TSP

_NP_ACT = {
    "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
    "tanh": np.tanh,
    "relu": lambda v: np.maximum(v, 0),
    "leaky_relu": lambda v: np.where(v > 0, v, 0.01 * v),
}


@pytest.mark.parametrize("acts", M.TSP_ACTIVATION_PAIRS[:2] + M.TSP_ACTIVATION_PAIRS[4:])
def test_tsp_forward_matches_numpy(acts):
  """Eq. 3.1-3.5 with delta1+delta2 pairs of Table 3.1 (ReLU+ReLU: see the rank-deficiency test)."""
  b, k, h, w, c, d = 2, 6, 5, 4, 3, 2
  x = np.random.default_rng(6).normal(size=(b, k, h, w, c)).astype(np.float32)
  mod = M.TemporalSqueezePooling(num_squeezed=d, activations=acts)
  variables = _random_variables(mod, x, seed=1, scale=1.0)
  assert set(variables) == {"params"}  # nothing sown at init
  pw = variables["params"]
  assert pw["w1"]["kernel"].shape == (k, k) and pw["w2"]["kernel"].shape == (k, k * d)  # W1 KxK, W2 KDxK
  y, state = _apply(mod)(variables, jnp.asarray(x))
  d1, d2 = (_NP_ACT[a] for a in acts.split("+"))
  w1, b1, w2, b2 = (np.asarray(pw[n][m], np.float64) for n in ("w1", "w2") for m in ("kernel", "bias"))
  y_ref, lp = [], []
  for i in range(b):
    z = x[i].reshape(k, -1).mean(axis=1)  # Eq. 3.1
    a = d2(w2.T @ d1(w1.T @ z + b1) + b2).reshape(k, d)  # Eq. 3.2-3.3 (nn.Linear biases), Phi = I
    xbar = x[i].reshape(k, -1)
    yi = _lstsq(a, xbar)  # Eq. 3.4
    y_ref.append(yi.reshape(d, h, w, c))
    lp.append(np.mean(np.linalg.norm(xbar - a @ yi, axis=0)))  # Eq. 3.5
  np.testing.assert_allclose(np.asarray(y), np.stack(y_ref), rtol=2e-3, atol=2e-4)
  (l_proj,) = state["losses"]["l_proj"]
  np.testing.assert_allclose(float(l_proj), np.mean(lp), rtol=1e-4)


def test_tsp_literal_eq_3_2_without_bias_degenerates():
  """Why the FCs keep their biases: without them and z ~ 0 (normalised frames) a tanh delta1 makes every
  entry of A' equal delta2(0), so A (K x D, D = 2) has rank 1 and the projection is rejected."""
  x = np.random.default_rng(11).normal(size=(1, 5, 4, 4, 3)).astype(np.float32)
  x -= x.mean(axis=(2, 3, 4), keepdims=True)  # z = 0 exactly
  mod = M.TemporalSqueezePooling(num_squeezed=2, activations="tanh+sigmoid", use_bias=False)
  v = _random_variables(mod, x, seed=2)
  with pytest.raises(ValueError, match="rank-deficient"):
    mod.apply(v, jnp.asarray(x), mutable=["losses"])


def test_tsp_relu_relu_rank_deficiency_handled_with_ridge():
  """Table 3.1 ReLU+ReLU can zero a column of A: the ridge option keeps the projection finite."""
  x = np.random.default_rng(7).normal(size=(1, 5, 4, 4, 3)).astype(np.float32)
  mod = M.TemporalSqueezePooling(num_squeezed=2, activations="relu+relu", ridge=1e-3)
  v = jax.tree.map(jnp.zeros_like, _random_variables(mod, x, seed=3))  # A = 0: every column dependent
  y, st = _apply(mod)(v, jnp.asarray(x))
  assert np.all(np.asarray(y) == 0)
  np.testing.assert_allclose(float(st["losses"]["l_proj"][0]),
                             np.mean(np.linalg.norm(x[0].reshape(5, -1), axis=0)), rtol=1e-5)


# ---------------------------------------------------------------------------------------------- PWTP


def _np_conv(x, kernel, bias, stride, pad):
  """(N, H, W, C) cross-correlation with symmetric zero padding."""
  n, h, w, c = x.shape
  k = kernel.shape[0]
  xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  ho = (h + 2 * pad - k) // stride + 1
  wo = (w + 2 * pad - k) // stride + 1
  out = np.zeros((n, ho, wo, kernel.shape[-1]))
  for i in range(ho):
    for j in range(wo):
      patch = xp[:, i * stride:i * stride + k, j * stride:j * stride + k, :]
      out[:, i, j] = np.einsum("nabc,abco->no", patch, kernel)
  return out + bias


def _np_bilinear_up(a, out_h, out_w):
  """Half-pixel bilinear resize (PyTorch align_corners=False, source index clamped at the edges)."""
  n, h, w, c = a.shape

  def coords(o, i):
    src = (np.arange(o) + 0.5) * i / o - 0.5
    src = np.clip(src, 0, i - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, i - 1)
    return lo, hi, src - lo

  y0, y1, fy = coords(out_h, h)
  x0, x1, fx = coords(out_w, w)
  top = a[:, y0][:, :, x0] * (1 - fx)[None, None, :, None] + a[:, y0][:, :, x1] * fx[None, None, :, None]
  bot = a[:, y1][:, :, x0] * (1 - fx)[None, None, :, None] + a[:, y1][:, :, x1] * fx[None, None, :, None]
  return top * (1 - fy)[None, :, None, None] + bot * fy[None, :, None, None]


def _np_pwtp(x, p, bn_stats, k, s, d, blocks):
  """Eq. 3.7-3.13 in NumPy (float64). ``bn_stats``: None = batch statistics, else running stats."""
  b, t, h, w, c = x.shape
  gelu = lambda v: 0.5 * v * (1 + erf(v / np.sqrt(2)))
  xt = _np_conv(x.reshape(b * t, h, w, c), np.asarray(p["conv"]["kernel"], np.float64),
                np.asarray(p["conv"]["bias"], np.float64), s, (k - 1) // 2)  # Eq. 3.8
  hs, ws, cp = xt.shape[1:]
  xt = xt.reshape(b, t, hs, ws, cp)
  u = np.stack([np.sum(xt[:, t1] * xt[:, t2], axis=-1) / cp
                for t1 in range(t) for t2 in range(t1 + 1, t)], axis=-1)  # Eq. 3.9
  dense = lambda v, name: v @ np.asarray(p[name]["kernel"], np.float64) + np.asarray(p[name]["bias"], np.float64)
  hcur = gelu(dense(u, "mlp_in"))
  for i in range(blocks):
    bn = p[f"block{i}_bn"]
    if bn_stats is None:
      mean = hcur.reshape(-1, hcur.shape[-1]).mean(0)
      var = hcur.reshape(-1, hcur.shape[-1]).var(0)
    else:
      mean, var = (np.asarray(bn_stats[f"block{i}_bn"][n], np.float64) for n in ("mean", "var"))
    g = (hcur - mean) / np.sqrt(var + 1e-5) * np.asarray(bn["scale"]) + np.asarray(bn["bias"])
    g = dense(gelu(dense(g, f"block{i}_fc1")), f"block{i}_fc2")
    hcur = hcur + g
  a = dense(hcur, "mlp_out")  # (B, h', w', T D)
  if (hs, ws) != (h, w):
    a = _np_bilinear_up(a, h, w)
  a = a.reshape(b, h, w, t, d)  # Eq. 3.10
  p_res = np.zeros((b, t, h, w, c))
  for bi in range(b):
    for i in range(h):
      for j in range(w):
        ai = a[bi, i, j]
        xi = x[bi, :, i, j, :]  # (T, C)
        p_res[bi, :, i, j] = xi - ai @ _lstsq(ai, xi)  # Eq. 3.7, 3.11
  da = p_res.mean(axis=1)  # Eq. 3.12
  enopr = np.mean(np.sum(p_res ** 2, axis=1))  # Eq. 3.13-3.14
  return da, enopr


@pytest.mark.parametrize("d,train", [(1, False), (2, True)])
def test_pwtp_forward_matches_numpy(d, train):
  """Eq. 3.7-3.13: conv, u, the Fig. 3.14 MLP (BN in eval / train mode), bilinear up, projection, DA, ENoPR;
  and the decomposition x = x_hat + p with A_i^T p_i = 0 at every pixel (Eq. 3.11)."""
  b, t, h, w, c = 2, 5, 16, 16, 3
  k, s, cp = 5, 4, 6
  x = np.random.default_rng(8).normal(size=(b, t, h, w, c)).astype(np.float32)
  mod = M.PixelWiseTemporalProjection(num_basis=d, kernel_size=k, stride=s, channels=cp, mlp_ratio=0.25,
                                      mlp_blocks=1, expansion=2, return_all=True)
  v = _random_variables(mod, x, seed=4 + d)
  out, state = _apply(mod, train=train)(v, jnp.asarray(x))
  ref_da, ref_e = _np_pwtp(x.astype(np.float64), v["params"], None if train else v["batch_stats"], k, s, d, 1)
  np.testing.assert_allclose(np.asarray(out["da"]), ref_da, rtol=2e-3, atol=2e-4)
  np.testing.assert_allclose(float(state["losses"]["enopr"][0]), ref_e, rtol=1e-3)
  assert out["da"].shape == (b, h, w, c) and out["a"].shape == (b, h, w, t, d)
  np.testing.assert_allclose(np.asarray(out["x_hat"] + out["p"]), x, atol=1e-5)
  a = np.asarray(out["a"], np.float64)
  p = np.asarray(out["p"], np.float64).transpose(0, 2, 3, 1, 4)  # (B, H, W, T, C)
  np.testing.assert_allclose(np.swapaxes(a, -1, -2) @ p, 0.0, atol=1e-3)


def _pwtp_params(mlp_config=7, conv_setting=4, t=8, hw=224):
  mod = M.PixelWiseTemporalProjection(mlp_config=mlp_config, conv_setting=conv_setting)
  x = jax.ShapeDtypeStruct((1, t, hw, hw, 3), jnp.float32)
  v = jax.eval_shape(lambda: mod.init(jax.random.key(0), jnp.zeros(x.shape)))
  return mod, v, x


@pytest.mark.parametrize("cfg,params_k,mflops", [(2, 7.4, 38.0), (3, 7.9, 38.3), (4, 23.3, 50.2), (5, 35.5, 59.8),
                                                 (6, 10.0, 40.0), (7, 9.7, 39.7)])
def test_pwtp_table_3_13_params_and_macs(cfg, params_k, mflops):
  """Table 3.13 #2-#7 (T = 8, D = 1, 9x9 s8 C'=24 conv): params to 0.1k; conv/linear MACs of one 8 x 224^2
  segment within 1.5% below the thesis' FLOPs (which also count BN, upsampling and the projection)."""
  mod, v, x = _pwtp_params(cfg)
  n = flops.count_params(v["params"])
  assert round(n / 100) / 10 == params_k, n
  macs = flops.count_conv_linear_macs(mod, v, x) / 1e6
  assert 0.985 * mflops <= macs <= mflops, macs


def test_pwtp_default_is_config_7_with_9x9x3x24_conv():
  """Section 3.6.1 / Table 3.13: default PWTP = #7, conv 9x9x3x24 (5,832 weights + bias) -> 9.7k."""
  mod = M.PixelWiseTemporalProjection()
  v = jax.eval_shape(lambda: mod.init(jax.random.key(0), jnp.zeros((1, 8, 64, 64, 3))))
  assert v["params"]["conv"]["kernel"].shape == (9, 9, 3, 24)
  assert round(flops.count_params(v["params"]) / 100) / 10 == 9.7


@pytest.mark.parametrize("row,stride,k,cp", [(1, 1, 7, 12), (2, 1, 7, 24), (3, 4, 7, 24), (4, 8, 9, 24),
                                             (5, 8, 11, 24)])
def test_pwtp_table_3_11_conv_settings(row, stride, k, cp):
  """Table 3.11 rows: kernel k x k, C' output channels, stride s (-> 224 / s positions)."""
  mod = M.PixelWiseTemporalProjection(conv_setting=row, return_all=True)
  out = jax.eval_shape(lambda: mod.init_with_output(jax.random.key(0), jnp.zeros((1, 8, 224, 224, 3))))
  v = out[1]
  assert v["params"]["conv"]["kernel"].shape == (k, k, 3, cp)
  assert out[0]["u"].shape == (1, 224 // stride, 224 // stride, 28)


def test_dynamic_appearance_table_3_12_cost():
  """Table 3.12 "DA 7.13K params, 0.23G FLOPs": T = 6 frames per segment, 8 segments at 224^2
  (48 frames). Reconstruction within 1% (params) / 2% (conv+linear MACs)."""
  mod, v, _ = _pwtp_params(t=6)
  n = flops.count_params(v["params"])
  assert abs(n - 7130) / 7130 < 0.01, n
  x = jax.ShapeDtypeStruct((8, 6, 224, 224, 3), jnp.float32)
  macs = flops.count_conv_linear_macs(mod, v, x) / 1e9
  assert abs(macs - 0.23) / 0.23 < 0.02, macs
