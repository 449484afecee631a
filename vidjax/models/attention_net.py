"""TSM-ResNet with chapter 4 attention blocks (Table 4.1): RNL / NL / CPA / SE+RNL / GC / CBAM networks.

Registered as ``'attention_tsm_resnet'``. ``config.model`` holds the TSM-ResNet fields of
``tsm_resnet`` (``num_classes, depth, width, dropout, shift, stage_sizes``) and ``attention``
(:func:`default_attention_config`):

* ``blocks``: kinds applied in order after each chosen residual block, e.g. ``('rnl',)``, ``('nl',)``,
  ``('cpa',)``, ``('se', 'rnl')`` (the vision attention chain, section 4.4), ``('cg', 'rnl')`` (the
  reference code's chain), ``('se',)`` / ``('gc',)`` / ``('cbam',)`` (Table 4.6 baselines);
  ``()`` gives the plain TSM-ResNet.
* ``positions``: ``(stage, block)`` pairs in ``vidjax/backbones/resnet.py`` numbering (stage 1..4 =
  res2..res5, blocks 0-based). Default res3 blocks 0, 2 and res4 blocks 0, 2, 4 = ``((2, 0), (2, 2),
  (3, 0), (3, 2), (3, 4))`` ("+5 blocks" of Tables 4.4-4.6; the reference's ``make_non_local``).
* ``channel_positions``: where the channel blocks of the chain (``se``, ``cg``) are applied; ``()``
  means at every position (the thesis), ``((2, 0),)`` the reference code (ChannelGate on the first RNL
  only).
* per-kind options: ``rnl`` (``pairwise, aggregation, kernels`` = F_theta kernel per stage 1..4,
  ``ratio, dot_relu, impl, chunk_size``), ``nl``, ``cpa``, ``se``, ``cg``, ``gc``, ``cbam`` (see
  ``vidjax/modules/attention.py``).

Numbers (``python -m vidjax.tools.flops``, TSM-R50 8x224^2, 400 classes; REFERENCE.md section 13):
baseline 24.33M / 32.70 GMACs conv/linear; +5 NL 31.69M / 49.15; +5 RNL 28.13M *effective*
parameters / 40.92 GMACs conv/linear and ~106 GMACs in all (the attention matmuls, 47.8 GMACs, and
F_theta that the thesis' 41.15G leaves out; count the total with ``attention.rnl.impl='dense'``, as
XLA's cost analysis sees the chunked path's loop body once). The thesis' 35.48M for +5 RNL is the
reference's parameter count, which holds F_theta as a dense grouped ``(C', 32, k)`` weight plus an
equally large 0/1 mask (:func:`reference_param_count` reproduces it from the effective parameters).

:func:`attention_maps` returns the attention weights of one block for chosen query positions
(Figs. 4.1, 4.8-4.10).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vidjax.backbones.resnet import TSMResNet
from vidjax.models.registry import register
from vidjax.modules.attention import AttentionChain, diagonalwise_group_width
from vidjax.ops import attention as ops

DEFAULT_POSITIONS = ((2, 0), (2, 2), (3, 0), (3, 2), (3, 4))
CHANNEL_KINDS = ("se", "cg")
SPATIAL_KINDS = ("rnl", "nl", "cpa")


def default_attention_config() -> ml_collections.ConfigDict:
  """``config.model.attention`` defaults: 5 Gaussian RNL blocks as the reference builds them."""
  a = ml_collections.ConfigDict()
  a.blocks = ("rnl",)
  a.positions = DEFAULT_POSITIONS
  a.channel_positions = ()  # () = every position
  a.rnl = ml_collections.ConfigDict(dict(
      pairwise="gaussian",  # gaussian (Eq. 4.5) | dot (4.6) | cosine (4.7)
      aggregation="conv",  # conv (channel-wise) | avg | max (Table 4.3)
      # F_theta kernel per stage 1..4 (res2..res5): reference 3x7x7 in res3, 3x3x3 in res4.
      kernels=((3, 7, 7), (3, 7, 7), (3, 3, 3), (3, 3, 3)),
      ratio=2, dot_relu=True, impl="chunked", chunk_size=1024))
  a.nl = ml_collections.ConfigDict(dict(ratio=2, impl="chunked", chunk_size=1024))
  a.cpa = ml_collections.ConfigDict(dict(
      kernel_sizes=((1, 1, 1), (3, 3, 3), (3, 7, 7), (3, 9, 9)), scale="thw", zero_init=True))
  a.se = ml_collections.ConfigDict(dict(reduction=16, gate="additive"))
  a.cg = ml_collections.ConfigDict(dict(reduction=2))
  a.gc = ml_collections.ConfigDict(dict(reduction=16))
  a.cbam = ml_collections.ConfigDict(dict(reduction=16, kernel_size=(1, 7, 7)))
  return a


# Parameter-group rules of the reference's ``get_optim_policies`` for modules named ``*nl*``
# (REFERENCE.md sections 3 and 10): every module inside the NL / RNL block gives its *first* parameter
# to ``nl_weight`` (lr x1, wd x1) and its second to ``nl_bias`` (lr x2, wd x0). For convs that is the
# usual weight / bias split, but
# * RNL's ``DiagonalwiseRefactorization`` registers ``[mask, weight]``: the real F_theta taps get
#   lr x2 and no weight decay;
# * the block's BN3d gets gamma with weight decay (lr x1, wd x1) and beta with lr x2, wd x0 (other BNs:
#   lr x1, wd x0).
# The ChannelGate is not named ``nl``: its parameters follow the ordinary rules.
ATTENTION_PARAM_RULES = (
    "nl_f_theta: _attn/rnl/f_theta/kernel$ | kernel | 2 | 0",
    "nl_bn_scale: _attn/(rnl|nl)/bn/scale$ | bn | 1 | 1",
    "nl_bn_bias: _attn/(rnl|nl)/bn/bias$ | bn | 2 | 0",
)


def attention_param_groups(base_rules: Sequence[str], reference_quirk: bool = True) -> tuple[str, ...]:
  """``base_rules`` (first match wins) with the NL/RNL rules of the reference put in front."""
  return (tuple(ATTENTION_PARAM_RULES) if reference_quirk else ()) + tuple(base_rules)


def _tuplify(v):
  if isinstance(v, (list, tuple)):
    return tuple(_tuplify(x) for x in v)
  return v


def _options(kind: str, att, stage: int) -> tuple[tuple[str, Any], ...]:
  sub = att.get(kind) if hasattr(att, "get") else None
  opts = {k: _tuplify(v) for k, v in (sub.items() if sub is not None else ())}
  if kind == "rnl":
    kernels = opts.pop("kernels")
    opts["kernel_size"] = tuple(kernels[stage - 1])
  return tuple(sorted(opts.items()))


@dataclasses.dataclass(frozen=True)
class AttentionFactory:
  """``factory(channels, name)`` for the ``TSMResNet.insert`` hook: an :class:`AttentionChain`."""
  blocks: tuple
  dtype: Any = jnp.float32

  def __call__(self, channels: int, name: str):
    del channels  # the blocks read the channel count from their input
    return AttentionChain(blocks=self.blocks, dtype=self.dtype, name=name)

  def kind(self, kinds: Sequence[str] = SPATIAL_KINDS):
    """The last block whose kind is in ``kinds`` and its options, or ``(None, {})``."""
    for kind, opts in reversed(self.blocks):
      if kind in kinds:
        return kind, dict(opts)
    return None, {}


def build_insert(att, dtype=jnp.float32) -> tuple:
  """The ``insert`` tuple of ``(stage, block, AttentionFactory)`` for an attention config."""
  kinds = tuple(att.blocks)
  positions = tuple(tuple(int(v) for v in p) for p in att.positions)
  channel_positions = tuple(tuple(int(v) for v in p) for p in att.get("channel_positions", ()))
  insert = []
  for stage, block in positions:
    chosen = tuple(k for k in kinds
                   if k not in CHANNEL_KINDS or not channel_positions or (stage, block) in channel_positions)
    if chosen:
      blocks = tuple((k, _options(k, att, stage)) for k in chosen)
      insert.append((stage, block, AttentionFactory(blocks, dtype)))
  return tuple(insert)


@register("attention_tsm_resnet")
def attention_tsm_resnet(cfg, dtype):
  """TSM-ResNet-50/101 with attention blocks after the residual blocks of ``cfg.attention.positions``."""
  att = cfg.get("attention") or default_attention_config()
  return TSMResNet(
      num_classes=cfg.num_classes,
      depth=cfg.get("depth", 50),
      width=cfg.get("width", 1.0),
      stage_sizes=tuple(cfg.stage_sizes) if cfg.get("stage_sizes") else None,
      shift_div=cfg.get("shift_div", 8) if cfg.get("shift", True) else 0,
      dropout=cfg.get("dropout", 0.5),
      insert=build_insert(att, dtype),
      dtype=dtype)


def attention_maps(model: TSMResNet, variables, video, stage: int, block: int,
                   queries: Sequence[Sequence[int]], kind: str | None = None) -> jnp.ndarray:
  """Attention weights of the RNL / NL / CPA block after residual block ``(stage, block)``.

  Args:
    model: a TSM-ResNet built by ``attention_tsm_resnet``.
    variables: its variables; ``video``: ``(N, F, H, W, 3)`` normalised clips (inference mode).
    queries: reference positions ``(t, h, w)`` in the block's feature grid (res3 at 224^2: 8x28x28).
    kind: ``'rnl'``, ``'nl'`` or ``'cpa'`` when a chain holds several; default the last of them.
  Returns:
    ``(N, Q, T, H, W)``: for RNL / NL the normalised weights ``f(P_q, P_j) / C(x)`` of every query
    over all positions (each map sums to one for the Gaussian forms); for CPA, whose attention does
    not depend on a query, the same ``(T, H, W)`` map for every query.
  """
  factory = {(s, b): f for s, b, f in model.insert}.get((stage, block))
  if factory is None:
    raise ValueError(f"no attention block after residual block {(stage, block)}")
  kind, opts = factory.kind((kind,) if kind else SPATIAL_KINDS)
  if kind is None:
    raise ValueError(f"the block at {(stage, block)} has no spatio-temporal attention ({factory.blocks})")
  _, state = model.apply(variables, video, train=False, mutable=["intermediates"])
  inter = state["intermediates"][f"layer{stage}_{block}_attn"][kind]
  if kind == "cpa":
    a = inter["attention"][0][..., 0]
    return jnp.broadcast_to(a[:, None], (a.shape[0], len(queries)) + a.shape[1:])
  q5 = inter["query"][0]
  k5 = inter["key"][0] if "key" in inter else q5
  n, t, h, w, _ = q5.shape
  idx = ops.flat_index(queries, (t, h, w))
  q, k = ops.flatten_positions(q5), ops.flatten_positions(k5)
  pairwise = opts.get("pairwise", "gaussian") if kind == "rnl" else "gaussian"
  weights = ops.pairwise_weights(q[:, idx], k, pairwise, opts.get("dot_relu", True))
  return weights.reshape(n, len(queries), t, h, w)


def reference_param_count(params) -> dict:
  """Parameter counts as the reference code reports them, from our (effective) parameters.

  Each RNL ``f_theta/kernel`` ``(kt, kh, kw, 1, C)`` (``C*K`` taps) is held by the reference as a dense
  grouped weight ``(C, g, kt, kh, kw)`` (``g = diagonalwise_group_width(C)``, 32 when ``C >= 32``) plus
  a 0/1 mask of the same size (``requires_grad=False``).

  Returns ``{'effective', 'trainable', 'total'}``: ours, the reference's trainable count (dense
  weight, no mask) and its total (the thesis' figure, e.g. 35.48M for +5 RNL).
  """
  effective = trainable = total = 0
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    size = int(np.prod(leaf.shape))
    effective += size
    names = [getattr(p, "key", str(p)) for p in path]
    if len(names) >= 2 and names[-2:] == ["f_theta", "kernel"]:
      c, k = leaf.shape[-1], math.prod(leaf.shape[:3])
      dense_size = c * diagonalwise_group_width(c) * k
      trainable += dense_size
      total += 2 * dense_size
    else:
      trainable += size
      total += size
  return {"effective": effective, "trainable": trainable, "total": total}
