"""XLA compile options of the train and eval steps.

XLA:CPU can hand ops to YNNPACK (XNNPACK's successor) through the debug option
``xla_cpu_experimental_ynn_fusion_type``. With jax 0.10 its default list also sends individual
convolutions there, and on a 2-core x86 machine those run slower than XLA's own (Eigen) convolutions:
in ``bench/RESULTS.md`` a TSM-R50 step (2 x 8 x 112^2) took 4.3 s with the default and 1.8 s with the
list set to ``dot,reduce``, YNNPACK for matrix products and reductions (BatchNorm statistics and their
gradients), Eigen for convolutions. ``config.train.cpu_library_fusion`` sets the list (comma-separated subset of
``dot``, ``eltwise``, ``reduce``; ``''`` leaves XLA's default). On GPU/TPU nothing is set.

The option is experimental in XLA: a jaxlib that does not know it (or an enum value) is probed once
with a tiny compile; then the steps compile without it and a warning says so.
"""
from __future__ import annotations

import functools
import logging

import jax
import jax.numpy as jnp

_log = logging.getLogger(__name__)

YNN_OPTION = "xla_cpu_experimental_ynn_fusion_type"
KINDS = ("dot", "eltwise", "reduce")


def _ynn_value(kinds: str) -> str:
  names = [k.strip() for k in kinds.split(",") if k.strip()]
  bad = [k for k in names if k not in KINDS]
  if bad:
    raise ValueError(f"config.train.cpu_library_fusion={kinds!r}: unknown kind(s) {bad}; use a comma-separated "
                     f"subset of {', '.join(KINDS)} (or '' for none)")
  return ",".join(f"LIBRARY_FUSION_TYPE_{k.upper()}" for k in names)


@functools.lru_cache(maxsize=8)
def _supported(option: str, value: str) -> bool:
  try:
    jax.jit(lambda x: jnp.sum(x * x), compiler_options={option: value})(jnp.ones((8,), jnp.float32))
    return True
  except Exception as e:  # noqa: BLE001 - any refusal means: compile without it
    _log.warning("this jaxlib does not accept the XLA option %s=%s (%s); the steps compile without it "
                 "(slower on CPU)", option, value, str(e).splitlines()[0][:200])
    return False


def step_options(config) -> dict | None:
  """``compiler_options`` for ``jax.jit`` of the train/eval step: the YNNPACK fusion list on CPU, else None."""
  if jax.default_backend() != "cpu":
    return None
  kinds = config.get("train", {}).get("cpu_library_fusion", "dot,reduce")
  value = _ynn_value(kinds or "")
  if not value:
    return None
  return {YNN_OPTION: value} if _supported(YNN_OPTION, value) else None
