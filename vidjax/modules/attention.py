"""Chapter 4 attention blocks: NL, RNL, CPA, SE, the vision attention chain and the Table 4.6 baselines.

Every module is called as ``module(x, num_frames=T, train=train)`` on frames-as-batch features
``(N*T, H, W, C)`` (what the TSM-ResNet ``insert`` hook passes) and works on the whole clip
``(N, T, H, W, C)``; a 5D input is accepted as is. Outputs have the input's shape.

Counting convention (thesis tables, REFERENCE.md section 13 "GMACs mod"): what the reference builds
as ``nn.Conv3d`` / ``nn.Linear`` modules is a ``flax.linen.Conv`` / ``Dense`` here and counted by
``vidjax.tools.flops``; the attention matmuls and RNL's ``F_theta`` (a *functional* ``F.conv3d`` in
the reference's ``DiagonalwiseRefactorization``) are ``jnp`` / ``lax`` calls and are not. With this
rule +5 RNL gives 40.92 GMACs conv/linear, as the reference's module count.

Initialisation follows the reference where it exists: the 1x1x1 convolutions of NL/RNL/ChannelGate
keep PyTorch's default init (``kaiming_uniform(a=sqrt(5))``: U(+-1/sqrt(fan_in)) for weight and
bias); the BN after ``W_z`` has gamma = beta = 0 (the block is the identity at init, section 4.2.4).

Thesis vs reference code (DESIGN.md rule: the default reproduces the model whose numbers the thesis
reports; the other reading is an option):

* RNL ``F_theta`` kernel: 3x7x7 in res3 and **3x3x3 in res4** in the code (the thesis text says 3x7x7
  everywhere; its 35.48M parameters are the code's). The model config chooses it per stage.
* RNL ``F_theta`` in the code is ``DiagonalwiseRefactorization``: a dense grouped weight
  ``(C', 32, k)`` times a fixed 0/1 mask, mathematically a depthwise conv with taps
  ``weight[o, o % 32]``. Here it is a true depthwise conv (``ChannelwiseConv3D``, kernel
  ``(kt, kh, kw, 1, C')``): 28.13M effective parameters for +5 RNL; the thesis' 35.48M counts the
  dense weight and the mask (``vidjax.models.attention_net.reference_param_count``). Its init draws
  the taps from the distribution the masked xavier init of the code gives them.
* Dot-product RNL: the code's only dot path applies a ReLU (``ReLU(P^T P) / N``); Eq. 4.6 has none.
  ``dot_relu=True`` (default) is the code, ``False`` Eq. 4.6.
* SE of the attention chain (Eqs. 4.12-4.14) is not in the code; the code puts a GCNet-style
  ``ChannelGate`` (reduction 2, attention pooling, BN1d momentum 0.01) before the *first* RNL only.
  Both are here. Eq. 4.13 says ``W1 in R^{C/2 x C}`` but Table 4.6's +0.46M for 5 SE blocks only fits
  reduction 16 (2 x 33,376 + 3 x 132,288 = 463,616), the default.
* CPA (Eqs. 4.10-4.11) has no code; see :class:`ConvPyramidAttention` for the open choices.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vidjax.ops import attention as ops
from vidjax.ops import pointwise

# PyTorch's default Conv/Linear init: kaiming_uniform_(a=sqrt(5)) -> U(+-1/sqrt(fan_in)).
torch_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_bias_init(fan_in: int):
  """PyTorch's default bias init U(+-1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def conv1x1x1(features: int, in_features: int, name: str, dtype: Any, *, bias: bool = True,
              kernel_init=None) -> nn.Conv:
  """``nn.Conv3d(in, out, 1)`` with the PyTorch default init (counted as a conv module)."""
  return nn.Conv(features, (1, 1, 1), use_bias=bias, padding="VALID",
                 kernel_init=kernel_init or torch_kernel_init,
                 bias_init=torch_bias_init(in_features), dtype=dtype, name=name,
                 conv_general_dilated=pointwise.conv_general_dilated)


def attention_bn(train: bool, name: str, dtype: Any, *, zero_init: bool = False,
                 momentum: float = 0.9) -> nn.BatchNorm:
  """``layers.batch_norm`` (PyTorch defaults) with the two-pass batch variance.

  The output of an attention average varies little across positions compared with its mean (at init
  the RNL weights are almost uniform), where the one-pass ``E[x^2] - E[x]^2`` of Flax's default loses
  float32 precision: 4e-4 from PyTorch in train mode with one pass, 3e-5 with two (tests/parity/RNL.md).
  """
  zeros = nn.initializers.zeros
  return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=1e-5,
                      scale_init=zeros if zero_init else nn.initializers.ones, bias_init=zeros,
                      use_fast_variance=False, dtype=dtype, name=name)


def dense(features: int, in_features: int, name: str, dtype: Any, *, zero: bool = False) -> nn.Dense:
  """``nn.Linear(in, out)`` with the PyTorch default init, or all zeros (``zero=True``)."""
  zeros = nn.initializers.zeros
  return nn.Dense(features, kernel_init=zeros if zero else torch_kernel_init,
                  bias_init=zeros if zero else torch_bias_init(in_features), dtype=dtype, name=name)


def diagonalwise_group_width(channels: int, width: int = 32) -> int:
  """Input channels per group of the reference's dense grouped ``F_theta`` weight."""
  return channels // max(channels // width, 1)


def diagonalwise_init(group_width: int = 32):
  """Init of a depthwise kernel ``(kt, kh, kw, 1, C)`` as the reference's masked xavier init.

  The reference draws ``xavier_uniform`` on the dense ``(C, g, kt, kh, kw)`` weight
  (``g = diagonalwise_group_width(C)``) and keeps ``weight[o, o % g]``: each tap is
  U(+-sqrt(6 / (K (g + C)))), ``K = kt kh kw``.
  """
  def init(key, shape, dtype=jnp.float32):
    c = shape[-1]
    k = math.prod(shape[:3])
    bound = math.sqrt(6.0 / (k * (diagonalwise_group_width(c, group_width) + c)))
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


class ChannelwiseConv3D(nn.Module):
  """``F_theta`` as a channel-wise 3D conv (Eq. 4.3), stride 1, padding ``(k - 1) // 2``, no bias.

  A ``lax`` convolution, not an ``nn.Conv``: the reference's is functional and outside its module
  MAC count. Parameter ``kernel``: ``(kt, kh, kw, 1, C)``.
  """
  kernel_size: Sequence[int] = (3, 7, 7)
  group_width: int = 32
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", diagonalwise_init(self.group_width),
                        (*self.kernel_size, 1, x.shape[-1]), jnp.float32)
    return ops.channelwise_conv3d(x.astype(self.dtype), kernel)


class RegionNonLocal(nn.Module):
  """Region-based non-local block, Eqs. 4.2-4.9 (Fig. 4.3; reference ``ops/rnl.py``).

  ``theta = W_g x`` (1x1x1 conv C -> C/ratio, the value of Eq. 4.9), ``P = F_theta(theta)``
  (channel-wise conv of ``kernel_size``, or avg / max pooling), weights ``f(P_i, P_j) / C(x)`` over all
  ``T H W`` positions of the clip, ``y = w theta``; ``z = BN(W_z y) + x`` with gamma = beta = 0 at init.

  Attributes:
    kernel_size: cuboid ``N_i`` of F_theta (3x7x7 res3, 3x3x3 res4 in the reference). All ones: no
      F_theta at all (the reference skips it), ``P = theta``.
    aggregation: ``'conv'`` (channel-wise conv), ``'avg'`` or ``'max'`` (Table 4.3).
    pairwise: ``'gaussian'`` (Eq. 4.5), ``'dot'`` (Eq. 4.6) or ``'cosine'`` (Eq. 4.7) (Table 4.4).
    dot_relu: ReLU in the dot-product version (reference code; Eq. 4.6 has none).
    impl / chunk_size: attention implementation (``vidjax.ops.attention``): ``'chunked'`` (memory
      efficient, default), ``'dense'`` (the reference's full matrix) or ``'sdpa'``.

  Sows ``intermediates/query`` = ``P`` (N, T, H, W, C') for the attention maps (Fig. 4.1 / 4.9).
  """
  kernel_size: Sequence[int] = (3, 7, 7)
  aggregation: str = "conv"
  pairwise: str = "gaussian"
  ratio: int = 2
  dot_relu: bool = True
  impl: str = "chunked"
  chunk_size: int = 1024
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, num_frames: Optional[int] = None, train: bool = False):
    x5, back = ops.to_clip(x, num_frames)
    n, t, h, w, c = x5.shape
    ci = max(c // self.ratio, 1)
    theta = conv1x1x1(ci, c, "theta", self.dtype)(x5)
    if self.aggregation == "conv":
      p = (ChannelwiseConv3D(tuple(self.kernel_size), dtype=self.dtype, name="f_theta")(theta)
           if any(k > 1 for k in self.kernel_size) else theta)
    else:
      p = ops.region_aggregate(theta, self.aggregation, tuple(self.kernel_size))
    self.sow("intermediates", "query", p)
    q = ops.flatten_positions(p)
    y = ops.attention(q, q, ops.flatten_positions(theta), self.pairwise, self.impl,
                      self.chunk_size, self.dot_relu)
    y = y.reshape(n, t, h, w, ci)
    z = conv1x1x1(c, ci, "w_z", self.dtype)(y)
    z = attention_bn(train, "bn", self.dtype, zero_init=True)(z)
    return back(z + x5)


class NonLocal(nn.Module):
  """Embedded-Gaussian non-local block (Wang et al.; Eq. 4.1 (ii), Fig. 4.2; BQN ``ops/non_local.py``).

  ``g, theta, phi``: 1x1x1 convs C -> C/2 (bias); ``w = softmax_j(theta_i . phi_j)``; ``y = w g``;
  ``z = BN(W_z y) + x``, BN gamma = beta = 0 at init; no sub-sampling. Sows ``query`` (theta) and
  ``key`` (phi).
  """
  ratio: int = 2
  impl: str = "chunked"
  chunk_size: int = 1024
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, num_frames: Optional[int] = None, train: bool = False):
    x5, back = ops.to_clip(x, num_frames)
    n, t, h, w, c = x5.shape
    ci = max(c // self.ratio, 1)
    g = conv1x1x1(ci, c, "g", self.dtype)(x5)
    th = conv1x1x1(ci, c, "theta", self.dtype)(x5)
    ph = conv1x1x1(ci, c, "phi", self.dtype)(x5)
    self.sow("intermediates", "query", th)
    self.sow("intermediates", "key", ph)
    flat = ops.flatten_positions
    y = ops.attention(flat(th), flat(ph), flat(g), "gaussian", self.impl, self.chunk_size)
    z = conv1x1x1(c, ci, "w_z", self.dtype)(y.reshape(n, t, h, w, ci))
    z = attention_bn(train, "bn", self.dtype, zero_init=True)(z)
    return back(z + x5)


class ConvPyramidAttention(nn.Module):
  """Convolution Pyramid Attention, Eqs. 4.10-4.11 (Fig. 4.5); no reference code exists.

  ``a = sigma_{THW}(F(mean_C(x)))``, ``F = sum_k f^{kt x ks x ks}`` (single-channel 3D convs, stride 1,
  padding ``(k - 1) // 2``), output ``a * x``.

  Choices the thesis leaves open (decided here):

  * **Scale of the softmax.** Over ``THW`` positions the weights sum to one, so each is about
    ``1/THW`` (1/6,272 at res3) and Eq. 4.10 read literally shrinks the features by three to four
    orders of magnitude, which a block placed between pretrained residual stages cannot afford.
    Default ``scale='thw'`` multiplies the softmax by ``THW`` (weights average to one; uniform
    attention is the identity); ``scale='none'`` is Eq. 4.10 as printed.
  * Convs have no bias (a bias shared by all positions cancels in the softmax) and are zero at init
    (``zero_init=True``): uniform attention, so with ``scale='thw'`` the block starts as the identity,
    as RNL/NL do through their zero BN. ``zero_init=False``: Kaiming fan-out normal as the backbone.
  * The pyramid convs are ``nn.Conv`` modules (counted as conv MACs).

  Default pyramid: 1x1x1 + 3x3x3 + 3x7x7 + 3x9x9 (the best row of Table 4.5). Sows
  ``intermediates/attention`` (N, T, H, W, 1), the weights that multiply ``x``.
  """
  kernel_sizes: Sequence[Sequence[int]] = ((1, 1, 1), (3, 3, 3), (3, 7, 7), (3, 9, 9))
  scale: str = "thw"
  zero_init: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, num_frames: Optional[int] = None, train: bool = False):
    x5, back = ops.to_clip(x, num_frames)
    n, t, h, w, c = x5.shape
    m = jnp.mean(x5, axis=-1, keepdims=True)
    init = nn.initializers.zeros if self.zero_init else nn.initializers.variance_scaling(
        2.0, "fan_out", "normal")
    score = 0.0
    for ks in self.kernel_sizes:
      ks = tuple(int(k) for k in ks)
      name = "f_" + "x".join(str(k) for k in ks)
      score = score + nn.Conv(1, ks, padding=ops.same_padding(ks), use_bias=False, kernel_init=init,
                              dtype=self.dtype, name=name)(m)
    a = ops.softmax_positions(score)
    if self.scale == "thw":
      a = a * (t * h * w)
    elif self.scale != "none":
      raise ValueError(f"scale must be 'thw' or 'none', got {self.scale!r}")
    self.sow("intermediates", "attention", a)
    return back(a.astype(x5.dtype) * x5)


class SqueezeExcite(nn.Module):
  """Squeeze-and-excitation over space-time.

  ``gate='additive'`` (default): the thesis' SE of the vision attention chain, Eqs. 4.12-4.14:
  ``s' = mean_{THW} x``, ``s = W2 ReLU(BN(W1 s'))``, ``v = x + s`` broadcast over T, H, W. W1, W2 are
  FC layers with bias (``W1: C -> C/reduction``); reduction 16 reproduces Table 4.6 (+0.46M for 5
  blocks). ``W2`` is zero at init (the thesis does not say; as the reference's ChannelGate ``W_v2``, it
  makes the chain the identity at init). BN: BatchNorm1d defaults (momentum 0.1 = Flax 0.9).

  ``gate='sigmoid'``: the SE of Hu et al. ([59], "+5 SE" of Table 4.6):
  ``x * sigmoid(W2 ReLU(W1 s'))`` with no BN, PyTorch default init.
  """
  reduction: int = 16
  gate: str = "additive"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, num_frames: Optional[int] = None, train: bool = False):
    x5, back = ops.to_clip(x, num_frames)
    c = x5.shape[-1]
    r = max(c // self.reduction, 1)
    s = jnp.mean(x5, axis=(1, 2, 3))
    s = dense(r, c, "w1", self.dtype)(s)
    if self.gate == "additive":
      s = nn.relu(attention_bn(train, "bn", self.dtype)(s))
      s = dense(c, r, "w2", self.dtype, zero=True)(s)
      out = x5 + s[:, None, None, None, :]
    elif self.gate == "sigmoid":
      s = dense(c, r, "w2", self.dtype)(nn.relu(s))
      out = x5 * nn.sigmoid(s)[:, None, None, None, :]
    else:
      raise ValueError(f"gate must be 'additive' or 'sigmoid', got {self.gate!r}")
    return back(out)


class ChannelGate(nn.Module):
  """The reference's channel attention (``ops/rnl.py`` ``ChannelGate``, REFERENCE.md section 3).

  ``a = softmax_{THW}(W_k x)`` (1x1x1 conv C -> 1), ``ctx = sum_THW a x`` (C,),
  ``W_v2 ReLU(BN1d(W_v1 ctx))`` (``W_v1: C -> C/reduction``, BN momentum 0.01 = Flax 0.99,
  ``W_v2`` weight and bias zero at init), added to ``x`` at every position. Reduction 2 as the code.
  """
  reduction: int = 2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, num_frames: Optional[int] = None, train: bool = False):
    x5, back = ops.to_clip(x, num_frames)
    n, c = x5.shape[0], x5.shape[-1]
    r = max(c // self.reduction, 1)
    a = ops.softmax_positions(conv1x1x1(1, c, "w_k", self.dtype)(x5))
    ctx = jnp.einsum("nthwc,nthw->nc", x5, a[..., 0].astype(x5.dtype))
    s = dense(r, c, "w_v1", self.dtype)(ctx)
    s = nn.relu(attention_bn(train, "bn1", self.dtype, momentum=0.99)(s))
    s = dense(c, r, "w_v2", self.dtype, zero=True)(s)
    return back(x5 + s[:, None, None, None, :])


class GlobalContext(nn.Module):
  """GC block of GCNet (Cao et al. [15]), a Table 4.6 baseline, over the whole clip.

  Context modelling as ChannelGate (``softmax_{THW}(W_k x)`` pooling); transform
  ``W_v2 ReLU(LayerNorm(W_v1 ctx))`` with ``W_v1: C -> C/reduction`` (reduction 16 as GCNet), LN over the
  C/r channels (eps 1e-5), ``W_v2`` zero at init (GCNet); fusion by addition.
  """
  reduction: int = 16
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, num_frames: Optional[int] = None, train: bool = False):
    x5, back = ops.to_clip(x, num_frames)
    c = x5.shape[-1]
    r = max(c // self.reduction, 1)
    a = ops.softmax_positions(conv1x1x1(1, c, "w_k", self.dtype)(x5))
    ctx = jnp.einsum("nthwc,nthw->nc", x5, a[..., 0].astype(x5.dtype))
    s = dense(r, c, "w_v1", self.dtype)(ctx)
    s = nn.relu(nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, name="ln")(s))
    s = dense(c, r, "w_v2", self.dtype, zero=True)(s)
    return back(x5 + s[:, None, None, None, :])


class CBAM(nn.Module):
  """CBAM (Woo et al. [149]) over the clip, a Table 4.6 baseline.

  Channel attention ``sigmoid(MLP(avg_THW x) + MLP(max_THW x))`` (shared MLP C -> C/r -> C with bias,
  reduction 16), then spatial attention ``sigmoid(BN(conv([mean_C, max_C])))`` with a 2 -> 1 conv of
  ``kernel_size`` (default 1x7x7, CBAM's 7x7 on every frame; e.g. 3x7x7 for a space-time version), no
  bias, padding ``(k - 1) // 2``; both multiply the features (as in CBAM; here after the residual
  block, at the positions of the RNL blocks).
  """
  reduction: int = 16
  kernel_size: Sequence[int] = (1, 7, 7)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, num_frames: Optional[int] = None, train: bool = False):
    x5, back = ops.to_clip(x, num_frames)
    c = x5.shape[-1]
    r = max(c // self.reduction, 1)
    mlp1, mlp2 = dense(r, c, "mlp_1", self.dtype), dense(c, r, "mlp_2", self.dtype)
    mlp = lambda v: mlp2(nn.relu(mlp1(v)))
    ca = nn.sigmoid(mlp(jnp.mean(x5, axis=(1, 2, 3))) + mlp(jnp.max(x5, axis=(1, 2, 3))))
    x5 = x5 * ca[:, None, None, None, :]
    m = jnp.concatenate([jnp.mean(x5, -1, keepdims=True), jnp.max(x5, -1, keepdims=True)], -1)
    ks = tuple(self.kernel_size)
    sa = nn.Conv(1, ks, padding=[((k - 1) // 2, (k - 1) // 2) for k in ks], use_bias=False,
                 kernel_init=torch_kernel_init, dtype=self.dtype, name="spatial")(m)
    sa = nn.sigmoid(attention_bn(train, "spatial_bn", self.dtype)(sa))
    return back(x5 * sa)


ATTENTION_MODULES = {
    "rnl": RegionNonLocal,
    "nl": NonLocal,
    "cpa": ConvPyramidAttention,
    "se": SqueezeExcite,
    "cg": ChannelGate,
    "gc": GlobalContext,
    "cbam": CBAM,
}


class AttentionChain(nn.Module):
  """The vision attention chain (section 4.4, Fig. 4.6): blocks applied in order on the clip.

  ``blocks``: ``((kind, ((option, value), ...)), ...)`` with kind in :data:`ATTENTION_MODULES`; each
  block is a child named by its kind. ``(('se', ...), ('rnl', ...))`` is the thesis' SE -> RNL;
  ``(('cg', ...), ('rnl', ...))`` the reference code's; a single block is a plain NL / RNL / CPA /
  SE / GC / CBAM insertion.
  """
  blocks: Sequence[tuple[str, Sequence[tuple[str, Any]]]] = (("rnl", ()),)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, num_frames: Optional[int] = None, train: bool = False):
    x5, back = ops.to_clip(x, num_frames)
    for kind, options in self.blocks:
      if kind not in ATTENTION_MODULES:
        raise ValueError(f"unknown attention block {kind!r}; one of {sorted(ATTENTION_MODULES)}")
      x5 = ATTENTION_MODULES[kind](**dict(options), dtype=self.dtype, name=kind)(x5, train=train)
    return back(x5)
