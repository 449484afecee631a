"""Training curves from a workdir's TensorBoard event files, as a table or a PNG (no TensorBoard needed).

``python -m vidjax.tools.curves --workdir=DIR [--tags=train/aux_loss,train/alpha,train/ce,val/top1]
[--points=10] [--png=FILE.png] [--markdown] [--no-verify]``

``python -m vidjax.tools.curves --schedule=TOTAL_STEPS [--gamma=0.2 --lam=0.3 --form=printed]
[--points=10] [--png=FILE.png] [--markdown]``

* ``--workdir``: reads the scalar summaries that :class:`vidjax.train.metrics.MetricWriter` writes with
  tensorboardX under ``DIR/tensorboard`` (or under ``DIR`` itself when it holds the event files). The
  event files are parsed here (the ``tensorboard`` package is not needed): TFRecord framing
  (``uint64`` little-endian length, masked CRC-32C of the length, the serialized ``Event``, masked CRC-32C
  of the data), ``Event`` from ``tensorboardX.proto.event_pb2``. Every file of the directory is read
  (a resumed run writes a new file); files are merged in the order they were started (``wall_time`` of
  their first event, then the file name), and for a step logged more than once the later record wins.
  A truncated last record (a run killed while writing) ends that file with a warning; a record whose
  data CRC does not match is skipped with a warning (``--no-verify`` skips the data CRC check, which is
  pure Python in tensorboardX and slow on very long runs).
* ``--tags``: comma-separated tags. By default the tags of ``DEFAULT_TAGS`` that the files contain (all
  tags if none of them is there); a tag named explicitly that the files lack is an error that lists the
  tags they have. ``train/*`` values are means over the ``train.log_every`` steps before the logged step
  (``vidjax/train/loop.py``), logged at the 1-based count of steps done.
* ``--schedule=M``: instead of a workdir, the scale scheduler alpha of thesis Eq. 3.19 (Fig. 3.12) over
  ``step = 0 .. M - 1`` from :func:`vidjax.train.joint.scale_schedule_curve` (``m = step + 1`` in the
  equation; ``--form=printed`` is the formula as printed, ``shifted`` the continuous reading, see
  ``vidjax/train/joint.py``). Defaults gamma = 0.2, lambda = 0.3 are those of ``joint.JointStrategy``.

Output: a table on stdout, one row per sampled step (``--points`` steps spread evenly over the logged
steps, the first and last always included; a tag not logged at a sampled step shows ``-``), one column
per tag; ``--markdown`` for a Markdown table. ``--png`` also draws every curve (all logged points) with
PIL: one 480 x 160 panel per tag, stacked vertically, with the min / max of the values and the first /
last step written at the ends of the axes.

Pure functions for notebooks: :func:`read_scalars`, :func:`table`, :func:`plot`, :func:`sample_steps`.
"""
from __future__ import annotations

import argparse
import math
import os
import struct
import sys
import warnings
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

DEFAULT_TAGS = ("train/aux_loss", "train/alpha", "train/ce", "val/top1")
PANEL_SIZE = (480, 160)

Scalars = Dict[str, List[Tuple[int, float]]]


class CurvesError(ValueError):
  """A workdir without event files, or a tag the event files do not have."""


class EventFileWarning(UserWarning):
  """A truncated or corrupt record in an event file."""


# ============================================================================================ reading
def _masked_crc(data: bytes) -> int:
  from tensorboardX.crc32c import crc32c
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def iter_records(path: str, verify: bool = True) -> Iterator[bytes]:
  """The data of each complete TFRecord of ``path``; stops (with a warning) at a truncated record."""
  with open(path, "rb") as f:
    buf = f.read()
  pos, n = 0, len(buf)
  while pos < n:
    if n - pos < 12:
      warnings.warn(f"{path}: truncated record header at byte {pos}; ignoring the rest", EventFileWarning)
      return
    header = buf[pos:pos + 8]
    (length,) = struct.unpack("<Q", header)
    (length_crc,) = struct.unpack("<I", buf[pos + 8:pos + 12])
    if _masked_crc(header) != length_crc:
      warnings.warn(f"{path}: corrupt record length at byte {pos}; ignoring the rest", EventFileWarning)
      return
    end = pos + 12 + length + 4
    if end > n:
      warnings.warn(f"{path}: truncated record at byte {pos} (a run killed while writing?); "
                    "ignoring the rest", EventFileWarning)
      return
    data = buf[pos + 12:pos + 12 + length]
    pos = end
    if verify:
      (data_crc,) = struct.unpack("<I", buf[end - 4:end])
      if _masked_crc(data) != data_crc:
        warnings.warn(f"{path}: record with a bad data CRC at byte {pos - len(data) - 16}; skipped",
                      EventFileWarning)
        continue
    yield data


def _scalar_value(value) -> Optional[float]:
  kind = value.WhichOneof("value")
  if kind == "simple_value":
    return float(value.simple_value)
  if kind == "tensor":  # new-style scalar summaries (a rank-0 float tensor)
    t = value.tensor
    if t.float_val:
      return float(t.float_val[0])
    if t.double_val:
      return float(t.double_val[0])
    if t.tensor_content:
      dtype = {1: np.float32, 2: np.float64, 19: np.float16}.get(t.dtype)
      if dtype is not None:
        arr = np.frombuffer(t.tensor_content, dtype)
        if arr.size == 1:
          return float(arr[0])
  return None


def event_files(workdir: str) -> List[str]:
  """The event files of ``workdir/tensorboard`` (or of ``workdir`` itself); CurvesError if none."""
  candidates = [os.path.join(workdir, "tensorboard"), workdir]
  for d in candidates:
    if os.path.isdir(d):
      files = [os.path.join(d, f) for f in os.listdir(d) if ".tfevents." in f]
      files = [f for f in files if os.path.isfile(f)]
      if files:
        return files
  raise CurvesError(f"no TensorBoard event files (events.out.tfevents.*) in {os.path.join(workdir, 'tensorboard')}"
                    f" or {workdir}")


def _read_file(path: str, verify: bool):
  from tensorboardX.proto import event_pb2
  first_wall_time = math.inf
  records = []
  for data in iter_records(path, verify):
    ev = event_pb2.Event()
    try:
      ev.ParseFromString(data)
    except Exception:  # noqa: BLE001 - protobuf's DecodeError; the CRC was fine, the payload is not an Event
      warnings.warn(f"{path}: a record that is not an Event; skipped", EventFileWarning)
      continue
    first_wall_time = min(first_wall_time, ev.wall_time) if ev.wall_time else first_wall_time
    if ev.WhichOneof("what") != "summary":
      continue
    for v in ev.summary.value:
      x = _scalar_value(v)
      if x is not None:
        records.append((v.tag, int(ev.step), x))
  return first_wall_time, records


def read_scalars(workdir: str, verify: bool = True) -> Scalars:
  """``{tag: [(step, value), ...]}`` sorted by step, merged over all event files (later files win)."""
  files = []
  for path in event_files(workdir):
    wall, records = _read_file(path, verify)
    files.append((wall, os.path.basename(path), records))
  files.sort(key=lambda x: (x[0], x[1]))
  merged: Dict[str, Dict[int, float]] = {}
  for _, _, records in files:
    for tag, step, value in records:
      merged.setdefault(tag, {})[step] = value
  return {tag: sorted(by_step.items()) for tag, by_step in sorted(merged.items())}


def select_tags(scalars: Mapping[str, Sequence], tags: Optional[Sequence[str]]) -> List[str]:
  """Explicit ``tags`` (CurvesError naming the available tags if one is missing), else the defaults."""
  available = sorted(scalars)
  if tags:
    missing = [t for t in tags if t not in scalars]
    if missing:
      raise CurvesError(f"unknown tag(s) {', '.join(missing)}; the event files have: "
                        f"{', '.join(available) if available else '(no scalar tags)'}")
    return list(tags)
  present = [t for t in DEFAULT_TAGS if t in scalars]
  return present or available


# ============================================================================================== table
def sample_steps(steps: Sequence[int], points: int) -> List[int]:
  """``points`` of the sorted unique ``steps``, evenly spread by index, first and last included."""
  s = sorted(set(int(x) for x in steps))
  if not s:
    return []
  if points >= len(s):
    return s
  idx = np.round(np.linspace(0, len(s) - 1, max(points, 2))).astype(int)
  return [s[i] for i in np.unique(idx)]


def _fmt(x: Optional[float]) -> str:
  return "-" if x is None else f"{x:.6g}"


def table(scalars: Mapping[str, Sequence[Tuple[int, float]]], tags: Sequence[str], points: int = 10,
          markdown: bool = False) -> str:
  """One row per sampled step (over the union of the tags' steps), one column per tag."""
  missing = [t for t in tags if t not in scalars]
  if missing:
    raise CurvesError(f"unknown tag(s) {', '.join(missing)}; available: {', '.join(sorted(scalars))}")
  by_tag = {t: dict((int(s), float(v)) for s, v in scalars[t]) for t in tags}
  steps = sample_steps([s for t in tags for s in by_tag[t]], points)
  header = ["step"] + list(tags)
  rows = [[str(s)] + [_fmt(by_tag[t].get(s)) for t in tags] for s in steps]
  if markdown:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
  widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
  return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [header] + rows)


# =============================================================================================== plot
def plot(series: Mapping[str, Tuple[Sequence[float], Sequence[float]]], path: str,
         panel_size: Tuple[int, int] = PANEL_SIZE) -> str:
  """One panel per ``name: (steps, values)``, stacked vertically, written to the PNG ``path``."""
  from PIL import Image, ImageDraw, ImageFont

  if not series:
    raise CurvesError("nothing to plot")
  pw, ph = panel_size
  img = Image.new("RGB", (pw, ph * len(series)), "white")
  draw = ImageDraw.Draw(img)
  font = ImageFont.load_default()
  left, right, top, bottom = 64, 12, 18, 18
  for k, (name, (steps, values)) in enumerate(series.items()):
    y0 = k * ph
    ax0, ax1 = left, pw - right
    ay0, ay1 = y0 + top, y0 + ph - bottom
    draw.text((4, y0 + 3), str(name), fill="black", font=font)
    draw.rectangle([ax0, ay0, ax1, ay1], outline=(120, 120, 120))
    if k:
      draw.line([(0, y0), (pw, y0)], fill=(200, 200, 200))
    st = np.asarray(steps, np.float64)
    va = np.asarray(values, np.float64)
    ok = np.isfinite(va)
    if not ok.any():
      draw.text((ax0 + 6, (ay0 + ay1) // 2 - 5), "no finite values", fill="red", font=font)
      continue
    vmin, vmax = float(va[ok].min()), float(va[ok].max())
    smin, smax = float(st.min()), float(st.max())
    ymax_txt, ymin_txt = f"{vmax:.4g}", f"{vmin:.4g}"
    draw.text((ax0 - 4 - draw.textlength(ymax_txt, font=font), ay0), ymax_txt, fill="black", font=font)
    draw.text((ax0 - 4 - draw.textlength(ymin_txt, font=font), ay1 - 11), ymin_txt, fill="black", font=font)
    s0_txt, s1_txt = f"{int(smin)}" if smin.is_integer() else f"{smin:g}", \
        f"{int(smax)}" if smax.is_integer() else f"{smax:g}"
    draw.text((ax0, ay1 + 3), s0_txt, fill="black", font=font)
    draw.text((ax1 - draw.textlength(s1_txt, font=font), ay1 + 3), s1_txt, fill="black", font=font)
    inner_x0, inner_x1, inner_y0, inner_y1 = ax0 + 3, ax1 - 3, ay0 + 3, ay1 - 3
    xs = (inner_x0 + inner_x1) / 2 + 0 * st if smax == smin else \
        inner_x0 + (st - smin) / (smax - smin) * (inner_x1 - inner_x0)
    ys = (inner_y0 + inner_y1) / 2 + 0 * va if vmax == vmin else \
        inner_y0 + (vmax - va) / (vmax - vmin) * (inner_y1 - inner_y0)
    # one polyline per run of finite values (NaN / inf break the curve)
    run: List[Tuple[float, float]] = []
    for x, y, good in list(zip(xs, ys, ok)) + [(0.0, 0.0, False)]:
      if good:
        run.append((float(x), float(y)))
        continue
      if len(run) == 1:
        (x1, y1), = run
        draw.ellipse([x1 - 2, y1 - 2, x1 + 2, y1 + 2], fill=(31, 119, 180))
      elif run:
        draw.line(run, fill=(31, 119, 180), width=2, joint="curve")
      run = []
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  img.save(path, format="PNG")
  return path


# ================================================================================================ CLI
def schedule_scalars(total_steps: int, gamma: float, lam: float, form: str) -> Tuple[str, Scalars]:
  """Eq. 3.19 as ``(tag, {tag: [(step, alpha), ...]})`` for ``step = 0 .. total_steps - 1``."""
  from vidjax.train import joint
  curve = joint.scale_schedule_curve(total_steps, gamma, lam, form)
  tag = "alpha"
  return tag, {tag: [(i, float(v)) for i, v in enumerate(curve)]}


def main(argv: Optional[Sequence[str]] = None) -> str:
  p = argparse.ArgumentParser(prog="python -m vidjax.tools.curves", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  src = p.add_mutually_exclusive_group(required=True)
  src.add_argument("--workdir", help="training workdir (reads DIR/tensorboard)")
  src.add_argument("--schedule", type=int, metavar="TOTAL_STEPS",
                   help="plot the scale scheduler of Eq. 3.19 over TOTAL_STEPS steps instead")
  p.add_argument("--tags", default="", help=f"comma-separated tags (default: those of {','.join(DEFAULT_TAGS)} "
                 "that exist, else all)")
  p.add_argument("--points", type=int, default=10, help="table rows (first and last step always included)")
  p.add_argument("--png", default="", help="also draw the curves into this PNG file")
  p.add_argument("--markdown", action="store_true", help="Markdown table instead of aligned text")
  p.add_argument("--no-verify", action="store_true", help="skip the data CRC check of the event records")
  p.add_argument("--gamma", type=float, default=0.2, help="--schedule: gamma of Eq. 3.19")
  p.add_argument("--lam", type=float, default=0.3, help="--schedule: lambda of Eq. 3.19")
  p.add_argument("--form", default="printed", choices=("printed", "shifted"),
                 help="--schedule: Eq. 3.19 as printed, or the continuous 'shifted' reading")
  args = p.parse_args(argv)
  if args.points < 1:
    p.error("--points must be >= 1")
  try:
    if args.schedule is not None:
      if args.schedule <= 0:
        p.error("--schedule needs TOTAL_STEPS > 0")
      if args.tags:
        p.error("--tags applies to --workdir only")
      tag, scalars = schedule_scalars(args.schedule, args.gamma, args.lam, args.form)
      tags = [tag]
      names = {tag: f"alpha, Eq. 3.19 (M={args.schedule}, gamma={args.gamma:g}, lambda={args.lam:g}, "
                    f"{args.form})"}
    else:
      scalars = read_scalars(args.workdir, verify=not args.no_verify)
      tags = select_tags(scalars, [t.strip() for t in args.tags.split(",") if t.strip()])
      names = {t: t for t in tags}
    if not tags:
      raise CurvesError(f"no scalar summaries in the event files of {args.workdir}")
    out = table(scalars, tags, args.points, markdown=args.markdown)
  except ValueError as e:  # CurvesError, or Eq. 3.19 parameters out of range
    raise SystemExit(f"error: {e}")
  print(out)
  if args.png:
    series = {names[t]: ([s for s, _ in scalars[t]], [v for _, v in scalars[t]]) for t in tags}
    print(plot(series, args.png), file=sys.stderr)
  return out


if __name__ == "__main__":
  main()
