"""The README model zoo (between <!-- zoo:start --> and <!-- zoo:end -->) agrees with the code.

* every config of configs/ (and ``zoo.EXTRA_SPECS``) has exactly one row, and no row names a config that
  is gone; the model, input and thesis cells are what ``vidjax.tools.zoo`` writes for it;
* parameters of every row are recomputed (``jax.eval_shape`` of ``init``), the reference count of the
  attention rows too;
* conv/linear GMACs are recomputed for a subset (one model family each) and all GMACs (XLA) for one;
* the parameter counts are within 8% of the thesis' where the thesis gives one for that setting (RNL
  rows: the reference count; the BQN rows differ by the lateral connections the thesis leaves out,
  REFERENCE.md section 13).

Regenerate the section with ``python -m vidjax.tools.zoo --write`` (a few minutes on a CPU).
"""
import os

import jax
import jax.numpy as jnp
import pytest

from vidjax import config_utils
from vidjax.models import registry
from vidjax.tools import flops, zoo

MACS_SUBSET = ("tsm_k400", "x3d_xs_ssv1", "dan_x3d_xs_ssv1", "rnl_tsm_k400")
TOTAL_SUBSET = ("x3d_xs_ssv1",)
FIX = "README zoo out of date: run python -m vidjax.tools.zoo --write"


@pytest.fixture(scope="module")
def rows():
  with open(zoo.README) as fh:
    return zoo.parse_table(fh.read())


def _init_shapes(config):
  model = registry.build(config.model)
  shape = config_utils.input_shape(config)
  return model, jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape, jnp.float32), train=False))


def test_every_config_has_one_row_with_its_thesis_numbers(rows):
  specs = zoo.config_specs()
  missing, stale = sorted(set(specs) - set(rows)), sorted(set(rows) - set(specs))
  assert sorted(rows) == specs, f"{FIX} (missing {missing}, stale {stale})"
  for spec, r in rows.items():
    config = zoo.load(spec)
    f, s = config_utils.input_shape(config)[1:3]
    assert r["input"] == f"{f}x{s}²", (spec, FIX)
    assert r["model"] == zoo.model_label(config), (spec, FIX)
    cells = zoo.thesis_cells(spec)
    assert (r["thesis"], r["thesis_top1"]) == (cells["thesis"], cells["thesis_top1"]), (spec, FIX)
  # thesis tables cited in the README must be tables of the thesis (chapters 3-5)
  for spec, t in zoo.THESIS.items():
    assert t["src"].startswith("Table ") and t["src"].split()[1][0] in "345", spec


def test_parameters_of_every_row(rows):
  from vidjax.models.attention_net import reference_param_count
  for spec, r in rows.items():
    config = zoo.load(spec)
    _, v = _init_shapes(config)
    n = flops.count_params(v["params"])
    assert zoo.parse_params(r["params"]) == n, (spec, r["params"], n, FIX)
    if "ref. count" in r["params"]:
      ref = reference_param_count(v["params"])["total"]
      assert f"ref. count {ref / 1e6:.2f}M" in r["params"], (spec, FIX)
    thesis = zoo.THESIS.get(spec, {}).get("params", "-")
    if thesis != "-":
      want = float(thesis.rstrip("M")) * 1e6
      got = ref if "ref. count" in r["params"] else n
      assert abs(got - want) / want < 0.08, (spec, got, thesis)


@pytest.mark.parametrize("spec", MACS_SUBSET)
def test_conv_linear_macs(rows, spec):
  config = zoo.load(spec)
  model, v = _init_shapes(config)
  x = jax.ShapeDtypeStruct(config_utils.input_shape(config), jnp.float32)
  gmacs = flops.count_conv_linear_macs(model, v, x, train=False) / 1e9
  assert rows[spec]["gmacs_conv_linear"] == f"{gmacs:.2f}", (spec, gmacs, FIX)


@pytest.mark.parametrize("spec", TOTAL_SUBSET)
def test_total_macs(rows, spec):
  config = zoo._dense_attention(zoo.load(spec))
  model, v = _init_shapes(config)
  x = jax.ShapeDtypeStruct(config_utils.input_shape(config), jnp.float32)
  assert rows[spec]["gmacs_total"] == f"{flops.xla_macs(model, v, x, train=False) / 1e9:.2f}", (spec, FIX)


def test_rewrite_touches_only_the_section():
  text = "intro\n<!-- zoo:start -->\nold table\n<!-- zoo:end -->\nafter\n"
  out = zoo.rewrite(text, "| `a` | new |")
  assert out == "intro\n<!-- zoo:start -->\n| `a` | new |\n<!-- zoo:end -->\nafter\n"
  with pytest.raises(ValueError):
    zoo.rewrite("no markers", "x")
