"""Temporal projection modules of chapter 3 and the baseline input representations of Table 3.12.

All modules take a stack of frames ``x`` of shape ``(B, T, H, W, C)`` (B = clips or segments) and are
called as ``module(x, train=bool)``. Extra losses are sown into the ``'losses'`` collection (not
during ``init``, so ``init`` returns only ``params`` / ``batch_stats``); the train step sums every leaf
of that collection into L1 (see ``vidjax/train/joint.py``).

TemporalSqueezePooling (TSP, thesis section 3.2.1, Eq. 3.1-3.5)
  ``z_k = mean_{H,W,C} x_k`` (Eq. 3.1, squeeze, K frames) -> ``A' = delta2(W2 delta1(W1 z))`` (Eq. 3.2,
  ``W1: K x K``, ``W2: KD x K``) reshaped row-major to ``K x D``; ``A = Phi(A') = A'`` (Eq. 3.3, the
  thesis sets Phi = I, section 3.3.1) -> every pixel-channel vector ``x_i in R^K`` is projected,
  ``y_i = (A^T A)^-1 A^T x_i`` (Eq. 3.4). Output: the D "squeezed images" ``(B, D, H, W, C)``.
  Sows ``l_proj = mean_i ||x_i - A y_i||_2`` (Eq. 3.5, averaged over the batch) as ``'l_proj'``.
  ``activations`` picks (delta1, delta2) among the six pairs of Table 3.1; default Sigmoid + LeakyReLU
  (section 3.3.1). Eq. 3.2 writes the FCs without bias terms (as the SE paper it follows does), but
  the FCs are PyTorch ``nn.Linear`` layers, which have biases, and without them A degenerates: for
  normalised frames z ~ 0, so delta1(W1 z) ~ delta1(0) and for the pairs whose delta1 vanishes at 0
  (tanh / ReLU / LeakyReLU) every entry of A' equals delta2(0), a rank-1 (or zero) matrix. Default
  ``use_bias=True``; ``use_bias=False`` is the literal Eq. 3.2. W1/W2 use PyTorch's default
  ``nn.Linear`` initialisation (U(+-1/sqrt(fan_in)) for weights and biases): random weights give
  linearly independent columns of A almost surely (the thesis: "A is properly initialized").

PixelWiseTemporalProjection (PWTP, section 3.5.2, Eq. 3.7-3.13, Fig. 3.14)
  ``x~ = F_s^{kxk}(x)`` (Eq. 3.8: per-frame conv C -> C', stride s, symmetric padding (k-1)//2, with
  bias: Table 3.13's parameter counts #2-#7 only all round correctly with the bias) ->
  ``u_i = {x~_i^{t1} . x~_i^{t2} / C' : t1 < t2}`` (Eq. 3.9, ``C_in = T(T-1)/2``) -> MLP of Fig. 3.14:
  ``FC(C_in -> r C_in) -> GELU``, B x ``[BN -> FC(-> beta r C_in) -> GELU -> FC(-> r C_in)] + residual``,
  ``FC(-> T D)`` (no activation) -> bilinear upsampling (half-pixel, no antialiasing) to H x W when
  s > 1 -> reshape (row-major) to ``A_i in R^{T x D}`` (Eq. 3.10) -> per pixel ``y_i = (A_i^T A_i)^-1
  A_i^T x_i`` with ``x_i in R^{T x C}`` (Eq. 3.7), ``p = x - A y`` (Eq. 3.11), dynamic appearance
  ``p_bar = mean_t p`` (Eq. 3.12). Output ``(B, H, W, C)``. Sows the ENoPR
  ``L1 = mean_j ||p~_j||^2`` (Eq. 3.13: squared L2 over T of every pixel-channel vector, averaged over
  H W C and over the B segments, Eq. 3.14) as ``'enopr'``.
  Defaults (section 3.6.1): T from the input, D = 1, k = 9, s = 8, C' = 24; MLP config #7 of
  Table 3.13 (beta = 1/4, B = 1, r = 2): 9,686 parameters = "9.7k". ``conv_setting`` (Table 3.11 rows
  1-5) and ``mlp_config`` (Table 3.13 #1-#7) select the ablation rows by number.
  Reading choices (no public code): the thesis text says "each FC except the last one is followed by a
  GELU"; the default follows the block as REFERENCE.md section 11 specifies it (BN -> FC -> GELU -> FC,
  + residual, no GELU after the second FC); ``gelu_after_block=True`` adds a GELU after the second FC
  (before the residual). Neither changes a parameter count. Table 3.13 #1 comes out 16.6k (thesis 16.9k)
  under every reading tried; Table 3.12's "7.13K" (T = 6) comes out 7.10K.
  GELU is the exact (erf) form, as PyTorch's ``nn.GELU``. All FCs/conv use PyTorch's default init.
  ``beta * r * C_in`` is rounded half-up when it is not an integer (T = 6: 7.5 -> 8).

DynamicImage (Table 3.12 baseline, Bilen et al.): ``sum_t alpha_t x_t`` with approximate rank pooling
  weights; no parameters. Output ``(B, H, W, C)``.
RGBDifference (Table 3.12 baseline, TSN): the T-1 consecutive differences ``x_{t+1} - x_t``, stacked on
  the channel axis (``mode='stack'``, TSN's RGB-diff input, ``(B, H, W, (T-1) C)`` frame-major) or
  summed (``'sum'``, ``(B, H, W, C)``); no parameters.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from vidjax.backbones.layers import batch_norm
from vidjax.ops import projection as P

# Table 3.1: delta1 + delta2 pairs of the TSP excitation (Eq. 3.2). LeakyReLU slope 0.01 (PyTorch default).
ACTIVATIONS = {
    "sigmoid": nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": nn.relu,
    "leaky_relu": lambda v: nn.leaky_relu(v, 0.01),
}
TSP_ACTIVATION_PAIRS = (
    "sigmoid+tanh", "tanh+sigmoid", "sigmoid+sigmoid", "relu+relu", "leaky_relu+sigmoid",
    "sigmoid+leaky_relu",
)

# Table 3.11: conv F_s^{kxk} settings, row -> (stride s, kernel k, channels C'). Row 4 is the default.
CONV_SETTINGS = {1: (1, 7, 12), 2: (1, 7, 24), 3: (4, 7, 24), 4: (8, 9, 24), 5: (8, 11, 24)}
# Table 3.13: MLP configs, # -> (bottleneck ratio beta, blocks B, expansion r). #7 is the default.
MLP_CONFIGS = {1: (0.25, 1, 4), 2: (0.25, 1, 1), 3: (0.25, 2, 1), 4: (0.25, 2, 4), 5: (1.0, 1, 4),
               6: (0.25, 0, 4), 7: (0.25, 1, 2)}


def torch_kernel_init():
  """PyTorch's default Linear/Conv weight init: kaiming_uniform(a=sqrt 5) = U(+-1/sqrt(fan_in))."""
  return nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_bias_init(fan_in: int):
  """PyTorch's default bias init: U(+-1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def _dense(features: int, fan_in: int, name: str, dtype, use_bias: bool = True) -> nn.Dense:
  return nn.Dense(features, use_bias=use_bias, kernel_init=torch_kernel_init(),
                  bias_init=torch_bias_init(fan_in), dtype=dtype, name=name)


def _round_half_up(v: float) -> int:
  return max(1, int(math.floor(v + 0.5)))


class TemporalSqueezePooling(nn.Module):
  """TSP (Eq. 3.1-3.5): ``(B, K, H, W, C)`` -> ``(B, D, H, W, C)`` squeezed images; sows ``'l_proj'``."""
  num_squeezed: int = 3  # D (section 3.3.1: K = 10, D = 3)
  activations: str = "sigmoid+leaky_relu"  # delta1+delta2, Table 3.1
  use_bias: bool = True
  ridge: float = 0.0
  solver: str = "cholesky"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    if self.activations not in TSP_ACTIVATION_PAIRS:
      raise ValueError(f"activations must be one of {TSP_ACTIVATION_PAIRS}, got {self.activations!r}")
    d1, d2 = (ACTIVATIONS[a] for a in self.activations.split("+"))
    b, k, h, w, c = x.shape
    d = self.num_squeezed
    if d >= k:
      raise ValueError(f"TSP needs D < K, got D={d}, K={k}")
    xf = x.astype(jnp.float32)
    z = jnp.mean(xf, axis=(2, 3, 4))  # Eq. 3.1, (B, K)
    a = d1(_dense(k, k, "w1", jnp.float32, self.use_bias)(z))
    a = d2(_dense(k * d, k, "w2", jnp.float32, self.use_bias)(a))  # Eq. 3.2
    a = a.reshape(b, k, d)  # Eq. 3.3 with Phi = I
    xbar = xf.reshape(b, k, h * w * c)  # columns are the x_i in R^K
    y = P.project_onto_columns(a, xbar, ridge=self.ridge, solver=self.solver)  # Eq. 3.4, (B, D, HWC)
    resid = xbar - P.reconstruct(a, y)
    ss = jnp.sum(resid * resid, axis=1)  # (B, HWC)
    pos = ss > 0
    norm = jnp.where(pos, jnp.sqrt(jnp.where(pos, ss, 1.0)), 0.0)  # ||.||_2, zero gradient at 0
    if not self.is_initializing():
      self.sow("losses", "l_proj", jnp.mean(norm))  # Eq. 3.5, mean over the batch
    return y.reshape(b, d, h, w, c).astype(self.dtype)


class PixelWiseTemporalProjection(nn.Module):
  """PWTP (Eq. 3.7-3.13): ``(B, T, H, W, C)`` -> dynamic appearance ``(B, H, W, C)``; sows ``'enopr'``.

  ``conv_setting`` (Table 3.11 row 1-5) / ``mlp_config`` (Table 3.13 #1-#7), when given, override the
  explicit fields. ``return_all=True`` returns a dict with ``y`` (B,H,W,D,C), ``x_hat`` and ``p``
  (B,T,H,W,C), ``a`` (B,H,W,T,D), ``u`` and ``da``.
  """
  num_basis: int = 1  # D
  kernel_size: int = 9  # k
  stride: int = 8  # s
  channels: int = 24  # C'
  conv_bias: bool = True
  mlp_ratio: float = 0.25  # bottleneck ratio beta
  mlp_blocks: int = 1  # B
  expansion: int = 2  # r
  conv_setting: Optional[int] = None
  mlp_config: Optional[int] = None
  gelu_after_block: bool = False
  ridge: float = 0.0
  solver: str = "cholesky"
  return_all: bool = False
  dtype: Any = jnp.float32

  def settings(self):
    s, k, cp = (self.stride, self.kernel_size, self.channels)
    if self.conv_setting is not None:
      s, k, cp = CONV_SETTINGS[self.conv_setting]
    beta, nb, r = self.mlp_ratio, self.mlp_blocks, self.expansion
    if self.mlp_config is not None:
      beta, nb, r = MLP_CONFIGS[self.mlp_config]
    return s, k, cp, beta, nb, r

  @nn.compact
  def __call__(self, x, train: bool = False):
    s, k, cp, beta, nb, r = self.settings()
    b, t, h, w, c = x.shape
    d = self.num_basis
    if not 1 <= d < t:
      raise ValueError(f"PWTP needs 1 <= D < T, got D={d}, T={t}")
    # Eq. 3.8: per-frame spatial conv, C -> C', stride s.
    pad = (k - 1) // 2
    xt = nn.Conv(cp, (k, k), strides=(s, s), padding=[(pad, pad), (pad, pad)], use_bias=self.conv_bias,
                 kernel_init=torch_kernel_init(), bias_init=torch_bias_init(k * k * c),
                 dtype=self.dtype, name="conv")(x.reshape(b * t, h, w, c).astype(self.dtype))
    hs, ws = xt.shape[1:3]
    xt = xt.reshape(b, t, hs, ws, cp).transpose(0, 2, 3, 1, 4).astype(jnp.float32)  # (B, h', w', T, C')
    u = P.temporal_relation_descriptor(xt)  # Eq. 3.9, (B, h', w', T(T-1)/2)
    # Eq. 3.10: MLP of Fig. 3.14.
    c_in = u.shape[-1]
    hid = r * c_in
    mid = _round_half_up(beta * hid)
    gelu = lambda v: nn.gelu(v, approximate=False)
    hcur = gelu(_dense(hid, c_in, "mlp_in", self.dtype)(u.astype(self.dtype)))
    for i in range(nb):
      g = batch_norm(train, name=f"block{i}_bn", dtype=self.dtype)(hcur)
      g = gelu(_dense(mid, hid, f"block{i}_fc1", self.dtype)(g))
      g = _dense(hid, mid, f"block{i}_fc2", self.dtype)(g)
      if self.gelu_after_block:
        g = gelu(g)
      hcur = hcur + g
    a = _dense(t * d, hid, "mlp_out", self.dtype)(hcur).astype(jnp.float32)  # (B, h', w', T*D)
    if (hs, ws) != (h, w):
      a = jax.image.resize(a, (b, h, w, t * d), "bilinear", antialias=False)
    a = a.reshape(b, h, w, t, d)
    # Eq. 3.7: per-pixel projection of x_i in R^{T x C} onto the columns of A_i.
    xp = x.astype(jnp.float32).transpose(0, 2, 3, 1, 4)  # (B, H, W, T, C)
    y = P.project_onto_columns(a, xp, ridge=self.ridge, solver=self.solver)  # (B, H, W, D, C)
    x_hat = P.reconstruct(a, y)
    p = xp - x_hat  # Eq. 3.11
    da = jnp.mean(p, axis=3)  # Eq. 3.12, (B, H, W, C)
    enopr = jnp.mean(jnp.sum(p * p, axis=3))  # Eq. 3.13-3.14
    if not self.is_initializing():
      self.sow("losses", "enopr", enopr)
    if self.return_all:
      tr = lambda v: v.transpose(0, 3, 1, 2, 4)
      return {"y": y, "x_hat": tr(x_hat), "p": tr(p), "a": a, "u": u, "da": da, "enopr": enopr}
    return da.astype(self.dtype)


class DynamicImage(nn.Module):
  """Dynamic Image baseline (approximate rank pooling): ``(B, T, H, W, C)`` -> ``(B, H, W, C)``."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    return P.dynamic_image(x.astype(jnp.float32), axis=1).astype(self.dtype)


class RGBDifference(nn.Module):
  """RGB-difference baseline (TSN): ``(B, T, H, W, C)`` -> ``(B, H, W, (T-1) C)`` ('stack') or ``C`` ('sum')."""
  mode: str = "stack"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    diff = P.rgb_difference(x.astype(jnp.float32), axis=1)  # (B, T-1, H, W, C)
    if self.mode == "stack":
      b, t1, h, w, c = diff.shape
      out = diff.transpose(0, 2, 3, 1, 4).reshape(b, h, w, t1 * c)
    elif self.mode == "sum":
      out = jnp.sum(diff, axis=1)
    else:
      raise ValueError(f"RGBDifference mode must be 'stack' or 'sum', got {self.mode!r}")
    return out.astype(self.dtype)


def pwtp_param_count(num_frames: int, num_basis: int = 1, in_channels: int = 3, conv_setting: int = 4,
                     mlp_config: int = 7, conv_bias: bool = True) -> int:
  """Closed-form parameter count of a PWTP (used to document Table 3.13 / 3.12 arithmetic)."""
  s, k, cp = CONV_SETTINGS[conv_setting]
  beta, nb, r = MLP_CONFIGS[mlp_config]
  c_in = math.comb(num_frames, 2)
  hid = r * c_in
  mid = _round_half_up(beta * hid)
  n = k * k * in_channels * cp + (cp if conv_bias else 0)
  n += c_in * hid + hid
  n += nb * (2 * hid + hid * mid + mid + mid * hid + hid)
  n += hid * num_frames * num_basis + num_frames * num_basis
  return int(n)


__all__ = ["TemporalSqueezePooling", "PixelWiseTemporalProjection", "DynamicImage", "RGBDifference",
           "TSP_ACTIVATION_PAIRS", "CONV_SETTINGS", "MLP_CONFIGS", "pwtp_param_count"]
