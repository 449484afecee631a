"""The README model zoo: ``vidjax.tools.flops.report`` for every config, next to the thesis' numbers.

``python -m vidjax.tools.zoo``             prints the markdown table (all configs: a few minutes on a CPU)
``python -m vidjax.tools.zoo --write``     also rewrites README.md between ``<!-- zoo:start -->`` and
                                           ``<!-- zoo:end -->`` (nothing else in the file changes)
``python -m vidjax.tools.zoo --json=FILE`` also writes the rows as JSON

Rows: every ``configs/*.py`` except ``default.py`` (its default argument) plus ``EXTRA_SPECS`` (config
arguments the thesis reports separately). Columns: the model, its input (frames x crop^2, one clip),
parameters, GMACs of conv/linear modules (the thesis' counting, REFERENCE.md section 13), all GMACs XLA
counts (attention with ``impl='dense'`` so that XLA sees every attention matmul), and the thesis' own
parameter / FLOP numbers and top-1 accuracy for that setting with the table they come from (``THESIS``).
Thesis FLOPs are per view; where a table gives the total over ``V`` views (Tables 3.7, 5.10) the cell
shows ``total / V``. ``tests/test_zoo.py`` fails when the README table and the code disagree.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
from typing import Optional

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_DIR = os.path.join(ROOT, "configs")
README = os.path.join(ROOT, "README.md")
START, END = "<!-- zoo:start -->", "<!-- zoo:end -->"
EXTRA_SPECS = ("bqn_x3d_ssv1:k400ft",)

# config spec -> the thesis' numbers for that setting: params, FLOPs per view, top-1 (%), where from.
THESIS = {
    "tsm_k400": dict(params="24.33M", flops="32.89G", top1="72.80", src="Table 4.6, K400"),
    "nl_tsm_k400": dict(params="31.69M", flops="49.38G", top1="74.41", src="Table 4.6, K400"),
    "rnl_tsm_k400": dict(params="35.48M", flops="41.15G", top1="74.68", src="Table 4.6, K400"),
    "se_rnl_tsm_k400": dict(params="35.95M", flops="41.16G", top1="74.97", src="Table 4.6, K400"),
    "cpa_tsm_k400": dict(params="-", flops="-", top1="74.27", src="Table 4.6, K400"),
    "rnl_tsm_ssv1": dict(params="35.48M", flops="41.15G", top1="49.24", src="Table 4.6, SS V1"),
    "bqn_ssv1": dict(params="47.4M", flops="60G", top1="53.3", src="Table 5.9, 24x3x2 views"),
    "bqn_k400": dict(params="-", flops="121G (1210G/10 views)", top1="76.8", src="Table 5.10, 48x10 views"),
    "bqn_ucf101": dict(params="-", flops="-", top1="97.6", src="Table 5.11, mean class acc., 3 splits"),
    "bqn_hmdb51": dict(params="-", flops="-", top1="77.6", src="Table 5.11, mean class acc., 3 splits"),
    "bqn_x3d_ssv1": dict(params="6.6M", flops="9.7G", top1="50.6", src="Table 5.9, from scratch, 48x3x2"),
    "bqn_x3d_ssv1:k400ft": dict(params="6.6M", flops="9.7G", top1="53.7", src="Table 5.9, K400 pre-trained"),
    "bqn_x3d_k400": dict(params="-", flops="9.7G (291G/30 views)", top1="77.1", src="Table 5.10, 48x30 views"),
    "x3d_m_ssv1": dict(params="3.3M", flops="6.4G", top1="46.7", src="Table 5.9, X3D-M, 16x3x2"),
    "x3d_xs_ssv1": dict(params="3.33M", flops="0.6G", top1="40.6", src="Table 3.6, X3D-XS, 4x6 views"),
    "dan_tsm_ssv1": dict(params="23.8M", flops="43.1G", top1="50.1", src="Table 3.6, 8x6 views"),
    "dan_x3d_xs_ssv1": dict(params="3.34M", flops="0.8G", top1="43.1", src="Table 3.6, 4x6 views"),
    "dan_x3d_m_ssv1": dict(params="3.34M", flops="7.0G", top1="53.7", src="Table 3.6, 16x6 views"),
    "dan_tsm_k400": dict(params="-", flops="86.7G (2602G/30 views)", top1="75.9", src="Table 3.7, 16x30 views"),
    "dan_x3d_m_k400": dict(params="-", flops="7.2G (216G/30 views)", top1="77.3", src="Table 3.7, 16x30 views"),
    "tesnet_ucf101": dict(params="-", flops="-", top1="85.4",
                          src="Table 3.2 setting 1, UCF101 split 1, RGB"),
}
NOTES = (
    "Thesis \"FLOPs\" are multiply-adds; they count conv/linear modules like the column \"GMACs conv/linear\" "
    "plus a few tenths of a GMAC of BN/ReLU/pooling (REFERENCE.md section 13).",
    "RNL / NL / SE+RNL / CPA rows: the thesis counts RNL's F_theta as the reference's dense grouped weight "
    "plus its 0/1 mask (\"ref. count\" in brackets, `attention_net.reference_param_count`); vidjax holds the "
    "depthwise taps only. Neither the thesis nor the conv/linear column counts the attention matmuls; "
    "\"GMACs total\" does. RNL-TSM-R50's 88.47 GMACs total = 40.92 conv/linear + 47.83 attention matmuls; "
    "the reference's own full count, 105.95 (REFERENCE.md section 13), also multiplies the 31 masked zeros "
    "of every 32 taps of its dense grouped F_theta (17.5 G), work vidjax does not do.",
    "BQN rows: the thesis' parameter counts leave out the lateral connections (R50 +0.28M, X3D +0.42M).",
    "\"GMACs total\" is XLA's cost analysis of the lowered forward pass / 2. XLA leaves out the products "
    "with a convolution's zero padding, so it can be a little below the conv/linear column, which counts "
    "every kernel tap as the thesis does.",
)


# =========================================================================================== configs
def config_specs(config_dir: str = CONFIG_DIR) -> list[str]:
  """Every experiment config (file stem) plus ``EXTRA_SPECS``, sorted."""
  names = [os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(config_dir, "*.py"))]
  names = [n for n in names if n not in ("default", "__init__")]
  return sorted(set(names) | set(EXTRA_SPECS))


def load(spec: str):
  from vidjax import config_utils
  name, _, arg = spec.partition(":")
  return config_utils.load_config_file(os.path.join(CONFIG_DIR, name + ".py") + (f":{arg}" if arg else ""))


def model_label(config) -> str:
  """A short human name of the config's model."""
  m = config.model
  name = m.name
  depth = m.get("depth", 50)
  if name == "tsm_resnet":
    return f"TSM-ResNet-{depth}" if m.get("shift", True) else f"TSN-ResNet-{depth}"
  if name == "attention_tsm_resnet":
    att = m.get("attention")
    blocks = "+".join(b.upper() for b in (att.blocks if att else ("rnl",)))
    n = len(att.positions) if att else 5
    return f"TSM-R{depth} + {n} [{blocks}]" if "+" in blocks else f"TSM-R{depth} + {n} {blocks}"
  if name == "busy_tsm_resnet":
    return f"MBPM + TSM-R{depth}"
  if name == "bqn_resnet":
    return f"BQN TSM-R{depth}"
  if name == "bqn_x3d":
    return f"BQN X3D-{m.get('variant', 'm').upper()}"
  if name == "x3d":
    return f"X3D-{m.get('variant', 'm').upper()}"
  if name == "dan":
    bb = m.get("backbone", "tsm_resnet")
    bb = {"tsm_resnet": "TSM-R50", "x3d_xs": "X3D-XS", "x3d_m": "X3D-M"}.get(bb, bb)
    rep = m.get("representation", "pwtp")
    return f"DAN {bb}" if rep == "pwtp" else f"{rep} + {bb}"
  if name == "tesnet":
    return f"TeSNet ({m.get('backbone', 'inception_resnet_v2')}, {m.get('modality', 'rgb')})"
  if name == "mobilenet_v2_tsm" or "mobilenet" in name:
    return "TSM-MobileNetV2"
  return name


def _dense_attention(config):
  """A copy whose attention blocks use the dense path (XLA counts a chunked loop body once)."""
  c = config.copy_and_resolve_references()
  att = c.model.get("attention")
  if att is not None:
    for kind in ("rnl", "nl"):
      if att.get(kind) is not None and "impl" in att[kind]:
        att[kind].impl = "dense"
  return c


def reference_count(config) -> Optional[int]:
  """The reference's parameter count (dense F_theta + mask) for attention models, else None."""
  if config.model.name != "attention_tsm_resnet":
    return None
  import jax
  import jax.numpy as jnp
  from vidjax import config_utils
  from vidjax.models import attention_net, registry
  model = registry.build(config.model)
  shape = config_utils.input_shape(config)
  v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape, jnp.float32), train=False))
  counts = attention_net.reference_param_count(v["params"])
  return counts["total"] if counts["total"] != counts["effective"] else None


def row(spec: str, total: bool = True) -> dict:
  """The zoo row of one config spec (``name`` or ``name:arg``)."""
  from vidjax.ops import depthwise
  from vidjax.tools import flops
  config = load(spec)
  with depthwise.use_impl("conv"):  # depthwise convs as lax.conv whatever the backend (as flops.report)
    r = flops.report(config) if not total else flops.report(_dense_attention(config))
  f, h, w = (int(v) for v in r["input"].split("x"))
  return {
      "config": spec, "model": model_label(config), "input": f"{f}x{h}²" if h == w else f"{f}x{h}x{w}",
      "params": int(r["params"]), "ref_params": reference_count(config),
      "gmacs_conv_linear": round(float(r["gmacs_conv_linear"]), 2),
      "gmacs_total": round(float(r["gmacs_total"]), 2), **thesis_cells(spec),
  }


def thesis_cells(spec: str) -> dict:
  t = THESIS.get(spec)
  if not t:
    return {"thesis": "-", "thesis_top1": "-"}
  pf = f"{t['params']} / {t['flops']}"
  return {"thesis": f"{pf}, {t['src'].split(',')[0]}" if pf != "- / -" else "-",
          "thesis_top1": f"{t['top1']} ({t['src']})"}


# ============================================================================================= table
HEADER = ("| config | model | input | params | GMACs conv/linear | GMACs total | thesis params / FLOPs | "
          "thesis top-1 (%) |\n| --- | --- | --- | ---: | ---: | ---: | --- | --- |")


def format_row(r: dict) -> str:
  params = f"{r['params']:,}" + (f" (ref. count {r['ref_params'] / 1e6:.2f}M)" if r.get("ref_params") else "")
  return (f"| `{r['config']}` | {r['model']} | {r['input']} | {params} | {r['gmacs_conv_linear']:.2f} | "
          f"{r['gmacs_total']:.2f} | {r['thesis']} | {r['thesis_top1']} |")


def table(rows: list[dict]) -> str:
  lines = ["Parameters and multiply-adds of one clip for every config (`python -m vidjax.tools.zoo`, "
           "`vidjax.tools.flops.report`: shapes only, no weights), next to the numbers the thesis reports for "
           "the same setting.", "", HEADER]
  lines += [format_row(r) for r in rows]
  lines += [""] + [f"* {n}" for n in NOTES]
  return "\n".join(lines)


def parse_table(text: str) -> dict[str, dict]:
  """README zoo section -> ``{config: {column: cell}}`` (cells as written)."""
  if START not in text or END not in text:
    raise ValueError(f"README has no {START} ... {END} section")
  section = text[text.index(START) + len(START): text.index(END)]
  cols = ("config", "model", "input", "params", "gmacs_conv_linear", "gmacs_total", "thesis", "thesis_top1")
  out = {}
  for line in section.splitlines():
    m = re.match(r"^\|\s*`([^`]+)`\s*\|", line)
    if not m:
      continue
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) != len(cols):
      raise ValueError(f"README zoo row has {len(cells)} cells, expected {len(cols)}: {line}")
    d = dict(zip(cols, cells))
    d["config"] = m.group(1)
    out[d["config"]] = d
  return out


def parse_params(cell: str) -> int:
  return int(cell.split()[0].replace(",", ""))


def rewrite(text: str, body: str) -> str:
  """``text`` with the zoo section replaced by ``body`` (markers kept, the rest untouched)."""
  if START not in text or END not in text:
    raise ValueError(f"README has no {START} ... {END} section")
  a, b = text.index(START) + len(START), text.index(END)
  return text[:a] + "\n" + body.strip() + "\n" + text[b:]


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--write", action="store_true", help="rewrite the README section")
  p.add_argument("--json", default="", help="also write the rows to this JSON file")
  p.add_argument("--only", default="", help="comma-separated config specs (default: all)")
  p.add_argument("--readme", default=README)
  args = p.parse_args(argv)
  import jax
  jax.config.update("jax_threefry_partitionable", False)
  specs = [s for s in args.only.split(",") if s] or config_specs()
  rows = []
  for spec in specs:
    rows.append(row(spec))
    print(format_row(rows[-1]), file=sys.stderr, flush=True)
  body = table(rows)
  print(body)
  if args.json:
    with open(args.json, "w") as fh:
      json.dump(rows, fh, indent=1)
  if args.write:
    if args.only:
      raise SystemExit("--write needs every config (drop --only)")
    with open(args.readme) as fh:
      text = fh.read()
    with open(args.readme, "w") as fh:
      fh.write(rewrite(text, body))
    print(f"rewrote the zoo section of {args.readme}", file=sys.stderr)


if __name__ == "__main__":
  main()
