"""MBPM (Eq. 5.1-5.3) and Band-Pass Lateral Connections (Eq. 5.5, Table 5.7) against NumPy/SciPy.

The references below are written from the thesis equations and from REFERENCE.md sections 1 and 6
(reflect padding, replicate temporal padding, half-pixel bilinear without antialiasing), not from the
code under test.
"""
import math

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from vidjax.modules.bandpass import BandPassLateralConnection, MotionBandPass
from vidjax.ops.filters import log_kernel, temporal_kernel
from vidjax.tools import flops


# ----------------------------------------------------------------------------------- NumPy references
def np_log(sigma, k):
  """Eq. 5.2 on the k x k integer grid centred at 0, divided by its sum (Eq. 5.3 / REFERENCE.md 6)."""
  out = np.zeros((k, k))
  c = (k - 1) / 2
  for i in range(k):
    for j in range(k):
      r2 = (i - c) ** 2 + (j - c) ** 2
      out[i, j] = -math.exp(-r2 / (2 * sigma ** 2)) / (math.pi * sigma ** 4) * (1 - r2 / (2 * sigma ** 2))
  return out / out.sum()


def np_mbpm(x, spatial, temporal, three_steps):
  """Eq. 5.3 with per-channel kernels. x (N, F, H, W, C); spatial (k, k, C); temporal (3, C)."""
  n, f, h, w, c = x.shape
  p = (spatial.shape[0] - 1) // 2
  s = np.zeros_like(x, dtype=np.float64)
  for a in range(n):
    for t in range(f):
      for ch in range(c):  # reflect without repeating the edge = scipy 'mirror'
        s[a, t, :, :, ch] = ndimage.correlate(x[a, t, :, :, ch].astype(np.float64), spatial[:, :, ch],
                                              mode="mirror")
  if three_steps:  # Gamma_t = sum_d h_d LoG(f_{3t+d}), stride 3
    s = s.reshape(n, f // 3, 3, h, w, c)
    return np.einsum("ntdhwc,dc->nthwc", s, temporal)
  padded = np.concatenate([s[:, :1], s, s[:, -1:]], axis=1)  # replicate the first / last frame
  return sum(temporal[d] * padded[:, d:d + f] for d in range(3))


def np_bilinear_matrix(n_in, n_out):
  """align_corners=False, no antialiasing: src = (i + .5) n_in / n_out - .5, clamped at 0."""
  m = np.zeros((n_out, n_in))
  for i in range(n_out):
    src = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
    i0 = min(int(math.floor(src)), n_in - 1)
    i1 = min(i0 + 1, n_in - 1)
    lam = src - i0
    m[i, i0] += 1 - lam
    m[i, i1] += lam
  return m


def np_resize(x, hw):
  """x (B, H, W, C) -> (B, h, w, C)."""
  a = np_bilinear_matrix(x.shape[1], hw[0])
  b = np_bilinear_matrix(x.shape[2], hw[1])
  return np.einsum("ih,jw,bhwc->bijc", a, b, x)


def np_bn(x, p, s):
  return (x - s["mean"]) / np.sqrt(s["var"] + 1e-5) * p["scale"] + p["bias"]


# ------------------------------------------------------------------------------------------ LoG kernel
@pytest.mark.parametrize("sigma,k", [(1.1, 9), (0.9, 7), (0.9, 3), (1.5, 11)])
def test_log_kernel_matches_eq_5_2(sigma, k):
  got = log_kernel(sigma, k)
  assert got.shape == (k, k) and got.dtype == np.float32
  np.testing.assert_allclose(got, np_log(sigma, k), rtol=1e-6, atol=1e-6)
  # Entries of a few hundred rounded to float32 (ulp ~3e-5) that cancel: the sum is 1 to ~1e-3.
  np.testing.assert_allclose(got.astype(np.float64).sum(), 1.0, atol=1e-3)


def test_log_kernel_reference_values():
  """REFERENCE.md section 6: the normalisation flips the sign (raw sum < 0) and makes it large."""
  k9 = log_kernel(1.1, 9)
  # 278.38 (min -37.60) is the reference's float32 build; float64 gives 278.398, 5e-5 away.
  np.testing.assert_allclose(k9[4, 4], 278.38, rtol=1e-4)
  np.testing.assert_allclose(k9.min(), -37.60, rtol=1e-3)
  np.testing.assert_allclose(log_kernel(0.9, 7)[3, 3], 226.76, rtol=1e-4)
  k3 = log_kernel(0.9, 3)  # the blur-like res5 kernel: centre .644, edges .133, corners -.044
  np.testing.assert_allclose([k3[1, 1], k3[0, 1], k3[0, 0]], [0.644, 0.133, -0.044], atol=1e-3)
  np.testing.assert_allclose(temporal_kernel(), [-1 / 3, 2 / 3, -1 / 3], rtol=1e-7)


# ----------------------------------------------------------------------------------------------- MBPM
def _random_kernels(variables, rng, k, c):
  p = flax.core.unfreeze(variables)["params"]
  spatial = rng.normal(size=(k, k, c)).astype(np.float32)
  temporal = rng.normal(size=(3, c)).astype(np.float32)
  p["log"]["kernel"] = jnp.asarray(spatial[:, :, None, :])
  p["temporal"]["kernel"] = jnp.asarray(temporal[:, None, :])
  return {"params": p}, spatial, temporal


@pytest.mark.parametrize("three_steps", [True, False])
def test_mbpm_matches_eq_5_3(three_steps):
  rng = np.random.default_rng(0)
  n, t, h, w, c, k = 2, 2, 11, 9, 3, 5
  f = 3 * t if three_steps else t
  x = rng.normal(size=(n, f, h, w, c)).astype(np.float32)
  m = MotionBandPass(sigma=1.1, kernel_size=k, three_steps=three_steps)
  v = m.init(jax.random.key(0), x)
  # The initial kernels: LoG (Eq. 5.2, normalised) in every channel and h of Eq. 5.1.
  np.testing.assert_allclose(v["params"]["log"]["kernel"][:, :, 0, 2], np_log(1.1, k), rtol=1e-5)
  np.testing.assert_allclose(v["params"]["temporal"]["kernel"][:, 0, 1], [-1 / 3, 2 / 3, -1 / 3], rtol=1e-6)
  y0 = np.asarray(m.apply(v, x))
  ref0 = np_mbpm(x, np.repeat(np_log(1.1, k)[:, :, None], c, 2), np.repeat(np.array([[-1], [2], [-1]]) / 3, c, 1),
                 three_steps)
  assert y0.shape == (n, t, h, w, c)
  np.testing.assert_allclose(y0, ref0, rtol=1e-4, atol=1e-3 * np.abs(ref0).max())
  # Distinct trained kernels per channel.
  v2, spatial, temporal = _random_kernels(v, rng, k, c)
  y = np.asarray(m.apply(v2, x))
  ref = np_mbpm(x, spatial, temporal, three_steps)
  np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_stem_mbpm_params_and_macs():
  """Table 5.1: 0.2K parameters (3*81 + 3*3 = 252) and 0.3G (0.296 GMACs on 24 x 224^2).

  MBPM is functional convolutions, so it adds nothing to the conv/linear ("GMACs mod") count.
  """
  m = MotionBandPass()
  x = jax.ShapeDtypeStruct((1, 24, 224, 224, 3), jnp.float32)
  v = jax.eval_shape(lambda: m.init(jax.random.key(0), jnp.zeros(x.shape)))
  assert flops.count_params(v["params"]) == 252
  assert flops.count_conv_linear_macs(m, v, x) == 0
  # Exact MACs of Eq. 5.3: 24 frames x 224^2 x 3 channels x 81 taps + 8 x 224^2 x 3 x 3 taps.
  expected = 24 * 224 * 224 * 3 * 81 + 8 * 224 * 224 * 3 * 3
  assert abs(expected / 1e9 - 0.296) < 0.001
  np.testing.assert_allclose(flops.xla_macs(m, v, x), expected, rtol=0.02)


def test_mbpm_freeze_stops_gradients():
  """Fig. 5.3 "untrained MBPM": same parameters, no gradient through them."""
  x = np.random.default_rng(1).normal(size=(1, 6, 8, 8, 3)).astype(np.float32)
  for trainable in (True, False):
    m = MotionBandPass(kernel_size=3, trainable=trainable)
    v = m.init(jax.random.key(0), x)
    g = jax.grad(lambda p: jnp.sum(m.apply({"params": p}, x) ** 2))(v["params"])
    norms = [float(jnp.abs(leaf).sum()) for leaf in jax.tree.leaves(g)]
    assert (min(norms) > 0) if trainable else (max(norms) == 0)


# ------------------------------------------------------------------------------------------------ BPLC
N, T, C = 1, 3, 4


def _lc_inputs(rng, quiet_hw=(5, 5), busy_hw=(8, 8)):
  x_c = rng.normal(size=(N * T, *quiet_hw, C)).astype(np.float32)
  x_f = rng.normal(size=(N * T, *busy_hw, C)).astype(np.float32)
  return x_c, x_f


def _randomise_bn(v, rng):
  """BNs are zero-initialised (Eq. 5.5); give them values so the connection is visible."""
  v = flax.core.unfreeze(v)
  for name in list(v["params"]):
    if name.endswith("_bn"):
      for key in ("scale", "bias"):
        v["params"][name][key] = jnp.asarray(rng.normal(size=(C,)).astype(np.float32))
      v["batch_stats"][name]["mean"] = jnp.asarray(rng.normal(size=(C,)).astype(np.float32))
      v["batch_stats"][name]["var"] = jnp.asarray(rng.uniform(0.5, 2.0, size=(C,)).astype(np.float32))
  return v


def _mbpm_np(p, x_c):
  spatial = np.asarray(p["log"]["kernel"])[:, :, 0, :]
  temporal = np.asarray(p["temporal"]["kernel"])[:, 0, :]
  nt, h, w, c = x_c.shape
  return np_mbpm(x_c.reshape(nt // T, T, h, w, c), spatial, temporal, False).reshape(nt, h, w, c)


@pytest.mark.parametrize("design", ["IV", "V", "III", "I", "II"])
@pytest.mark.parametrize("block_index", [1, 2])
def test_lateral_connection_eq_5_5(design, block_index):
  rng = np.random.default_rng(block_index)
  x_c, x_f = _lc_inputs(rng)
  lc = BandPassLateralConnection(block_index, T, T, design=design, kernel_size=3)
  v = lc.init(jax.random.key(0), x_c, x_f)
  # Zero-initialised BN: the connection is the identity at init (Eq. 5.5 text).
  y_c, y_f = lc.apply(v, x_c, x_f)
  np.testing.assert_array_equal(y_c, x_c)
  np.testing.assert_array_equal(y_f, x_f)

  odd = block_index % 2 == 1
  to_quiet = {"IV": odd, "V": odd, "III": True, "I": True, "II": False}[design]
  to_busy = {"IV": not odd, "V": not odd, "III": True, "I": False, "II": True}[design]
  with_mbpm = design != "V"
  assert ("to_quiet_bn" in v["params"]) == to_quiet
  assert ("to_busy_bn" in v["params"]) == to_busy
  assert ("to_busy_mbpm" in v["params"]) == (to_busy and with_mbpm)

  v = _randomise_bn(v, rng)
  y_c, y_f = lc.apply(v, x_c, x_f)
  p, s = v["params"], v["batch_stats"]
  ref_c, ref_f = x_c.astype(np.float64), x_f.astype(np.float64)
  if to_quiet:  # y_c = x_c + BN(Resize(x_f))
    ref_c = ref_c + np_bn(np_resize(x_f, x_c.shape[1:3]), p["to_quiet_bn"], s["to_quiet_bn"])
  if to_busy:  # y_f = x_f + BN(Resize(MBPM(x_c)))
    z = _mbpm_np(p["to_busy_mbpm"], x_c) if with_mbpm else x_c
    ref_f = ref_f + np_bn(np_resize(z, x_f.shape[1:3]), p["to_busy_bn"], s["to_busy_bn"])
  np.testing.assert_allclose(y_c, ref_c, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(y_f, ref_f, rtol=1e-4, atol=1e-4 * np.abs(ref_f).max())


def test_lateral_connection_phi_and_w1():
  """Eq. 5.5's phi (1x1 conv on Busy -> Quiet) and W_1 (1x1 conv on Quiet -> Busy), LC-III."""
  rng = np.random.default_rng(3)
  x_c, x_f = _lc_inputs(rng, quiet_hw=(5, 6), busy_hw=(8, 10))
  lc = BandPassLateralConnection(1, T, T, design="III", kernel_size=3, phi=True, w1=True)
  v = _randomise_bn(lc.init(jax.random.key(0), x_c, x_f), rng)
  p, s = v["params"], v["batch_stats"]
  assert p["to_quiet_phi"]["conv"]["kernel"].shape == (1, 1, C, C)
  y_c, y_f = lc.apply(v, x_c, x_f)
  phi = np.asarray(p["to_quiet_phi"]["conv"]["kernel"])[0, 0]
  w1 = np.asarray(p["to_busy_w1"]["conv"]["kernel"])[0, 0]
  ref_c = x_c + np_bn(np_resize(x_f, (5, 6)) @ phi, p["to_quiet_bn"], s["to_quiet_bn"])
  ref_f = x_f + np_bn(np_resize(_mbpm_np(p["to_busy_mbpm"], x_c), (8, 10)) @ w1, p["to_busy_bn"],
                      s["to_busy_bn"])
  np.testing.assert_allclose(y_c, ref_c, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(y_f, ref_f, rtol=1e-4, atol=1e-4 * np.abs(ref_f).max())


def test_lateral_connection_reference_sizes_256_160():
  """The BQN-R50 resizes: Busy 64 <-> Quiet 40 (x0.625 / x1.6), REFERENCE.md section 1."""
  rng = np.random.default_rng(4)
  x_c, x_f = _lc_inputs(rng, quiet_hw=(40, 40), busy_hw=(64, 64))
  for i in (1, 2):
    lc = BandPassLateralConnection(i, T, T, kernel_size=7)
    v = _randomise_bn(lc.init(jax.random.key(0), x_c, x_f), rng)
    y_c, y_f = lc.apply(v, x_c, x_f)
    p, s = v["params"], v["batch_stats"]
    if i == 1:
      ref = x_c + np_bn(np_resize(x_f, (40, 40)), p["to_quiet_bn"], s["to_quiet_bn"])
      np.testing.assert_allclose(y_c, ref, rtol=1e-4, atol=1e-4)
    else:
      ref = x_f + np_bn(np_resize(_mbpm_np(p["to_busy_mbpm"], x_c), (64, 64)), p["to_busy_bn"],
                        s["to_busy_bn"])
      np.testing.assert_allclose(y_f, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_lateral_connection_different_frame_counts():
  """Table 5.8's shorter Quiet clips: sizes are matched linearly in time as well (half-pixel centres)."""
  rng = np.random.default_rng(5)
  tq, tb = 2, 4
  x_c = rng.normal(size=(tq, 5, 5, C)).astype(np.float32)
  x_f = rng.normal(size=(tb, 8, 8, C)).astype(np.float32)
  lc = BandPassLateralConnection(3, tq, tb, design="III", kernel_size=3)
  v = _randomise_bn(lc.init(jax.random.key(0), x_c, x_f), rng)
  y_c, y_f = lc.apply(v, x_c, x_f)
  p, s = v["params"], v["batch_stats"]
  down = np.einsum("st,thwc->shwc", np_bilinear_matrix(tb, tq), np_resize(x_f, (5, 5)))
  np.testing.assert_allclose(y_c, x_c + np_bn(down, p["to_quiet_bn"], s["to_quiet_bn"]), rtol=1e-4, atol=1e-4)
  spatial = np.asarray(p["to_busy_mbpm"]["log"]["kernel"])[:, :, 0, :]
  temporal = np.asarray(p["to_busy_mbpm"]["temporal"]["kernel"])[:, 0, :]
  z = np_mbpm(x_c[None], spatial, temporal, False)[0]  # MBPM over the Quiet clip's own 2 frames
  up = np.einsum("st,thwc->shwc", np_bilinear_matrix(tq, tb), np_resize(z, (8, 8)))
  ref_f = x_f + np_bn(up, p["to_busy_bn"], s["to_busy_bn"])
  np.testing.assert_allclose(y_f, ref_f, rtol=1e-4, atol=1e-4 * np.abs(ref_f).max())
