"""Parameters and multiply-adds of a config's model, without running it.

``python -m vidjax.tools.flops --config=configs/tsm_k400.py [--json]``

* ``params``: number of entries in the ``params`` collection (``jax.eval_shape`` of ``init``).
* ``gmacs_conv_linear``: multiply-accumulates of ``nn.Conv`` / ``nn.ConvTranspose`` / ``nn.Dense``
  modules (and ``vidjax.ops.depthwise.DepthwiseConv``, counted as the ``nn.Conv(feature_group_count=C)``
  it replaces) only, for one clip: the convention of the thesis tables and of the reference's thop-like
  count ("GMACs mod", REFERENCE.md section 13). Attention matmuls, BN, activations, pooling, resizes
  and functional convolutions (``lax.conv`` called directly) are not in it.
* ``gmacs_total``: everything XLA's cost analysis counts in the ahead-of-time lowered forward pass,
  divided by 2 (FLOPs -> MACs). Depthwise convolutions are lowered as ``lax.conv`` here
  (``depthwise.use_impl('conv')``), whatever the backend, so the count does not depend on the machine.
"""
from __future__ import annotations

import contextlib
import json
import math
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from vidjax import config_utils
from vidjax.models import registry
from vidjax.ops import depthwise


def _module_macs(module: nn.Module, args, out) -> int:
  if isinstance(module, nn.Dense):
    return int(np.prod(out.shape)) * int(args[0].shape[-1])
  if isinstance(module, depthwise.DepthwiseConv):  # = nn.Conv(feature_group_count=C): prod(out) * prod(k)
    ks = (module.kernel_size,) if isinstance(module.kernel_size, int) else tuple(module.kernel_size)
    return depthwise.macs(out.shape, ks)
  if isinstance(module, (nn.Conv, nn.ConvTranspose)):
    ks = module.kernel_size if isinstance(module.kernel_size, (tuple, list)) else (module.kernel_size,)
    groups = getattr(module, "feature_group_count", 1) or 1
    return int(np.prod(out.shape)) * int(np.prod(ks)) * int(args[0].shape[-1]) // groups
  return 0


def count_conv_linear_macs(model: nn.Module, variables, *args, **kwargs) -> int:
  """MACs of the conv/dense modules in one ``model.apply(variables, *args)`` (shapes only)."""
  total = [0]

  def interceptor(next_fun, a, kw, context):
    out = next_fun(*a, **kw)
    if context.method_name == "__call__":
      total[0] += _module_macs(context.module, a, out)
    return out

  def run(v, *a):
    with nn.intercept_methods(interceptor):
      return model.apply(v, *a, **kwargs)

  with depthwise.use_impl("conv"):  # shapes only; the lax.conv graph is the smaller one to trace
    jax.eval_shape(run, variables, *args)
  return total[0]


def xla_macs(model: nn.Module, variables, *args, **kwargs) -> float:
  """Total MACs (XLA FLOPs / 2) of the lowered forward pass (depthwise convs as ``lax.conv``)."""
  fn = jax.jit(lambda v, *a: model.apply(v, *a, **kwargs))
  with depthwise.use_impl("conv"):
    lowered = fn.lower(variables, *args)
  try:
    cost = lowered.cost_analysis()
  except Exception:  # older jax: only the compiled executable has a cost model
    cost = None
  if not cost:
    cost = lowered.compile().cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0]
  return float(cost.get("flops", 0.0)) / 2.0


def count_params(params) -> int:
  return int(sum(math.prod(x.shape) for x in jax.tree.leaves(params)))


def counting_model_config(model_config):
  """``model_config`` with every attention on its ``dense`` path, for counting only.

  The chunked (memory-efficient) attention is a ``lax.map`` whose body XLA's cost analysis counts once,
  so ``gmacs_total`` would leave out most attention matmuls; the dense path does the same arithmetic
  in one piece. Nothing is run, so the (B, L, L) matrix is never allocated.
  """
  m = model_config.copy_and_resolve_references() if hasattr(model_config, "copy_and_resolve_references") else model_config
  attention = m.get("attention") if hasattr(m, "get") else None
  if attention is not None:
    with m.unlocked() if hasattr(m, "unlocked") else contextlib.nullcontext():
      for key in ("rnl", "nl"):
        if key in attention and "impl" in attention[key]:
          attention[key].impl = "dense"
  return m


def report(config, batch: int = 1) -> dict:
  """The numbers of one config's model for ``batch`` clips (1 = the thesis convention)."""
  dtype = config_utils.compute_dtype(config)
  model = registry.build(counting_model_config(config.model), dtype=dtype)
  x = jax.ShapeDtypeStruct(config_utils.input_shape(config, batch), jnp.float32)
  with depthwise.use_impl("conv"):
    variables = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros(x.shape, x.dtype), train=False))
  return {
      "model": config.model.name,
      "input": "x".join(str(d) for d in x.shape[1:4]),
      "params": count_params(variables["params"]),
      "gmacs_conv_linear": count_conv_linear_macs(model, variables, x, train=False) / 1e9,
      "gmacs_total": xla_macs(model, variables, x, train=False) / 1e9,
  }


FLAGS = flags.FLAGS


def main(argv):
  del argv
  config = FLAGS.config
  r = report(config)
  if FLAGS.json:
    print(json.dumps(r))
    return
  print(f"{'model':<24}{'input':<14}{'params':>14}{'GMACs conv/linear':>20}{'GMACs total':>14}")
  print(f"{r['model']:<24}{r['input']:<14}{r['params']:>14,}{r['gmacs_conv_linear']:>20.2f}{r['gmacs_total']:>14.2f}")


if __name__ == "__main__":
  from vidjax.config_utils import check_overrides
  check_overrides(sys.argv)
  config_flags.DEFINE_config_file("config", None, "Path to a config file.", lock_config=True)
  flags.DEFINE_bool("json", False, "Print one JSON line instead of a table.")
  flags.mark_flags_as_required(["config"])
  app.run(main)
