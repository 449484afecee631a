"""vidjax/tools/curves.py: TensorBoard event files read without TensorBoard, tables and PNG curves.

* TFRecord framing: the masked CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, mask
  ``((c >> 15 | c << 17) + 0xa282ead8)``) equals a bitwise implementation written here, on the standard
  check string ``"123456789"`` (CRC-32C 0xE3069283).
* Events written with tensorboardX.SummaryWriter by two writers (a resumed run, one step logged by both)
  read back exactly (float32 of the written values), the second writer winning the shared step.
* A truncated last record (run killed mid-write) and a record with a corrupted payload are dropped with a
  warning; every complete record before them is read.
* Tables: ``points`` rows, evenly spread, first and last logged step included, values of the logged
  steps; the unknown-tag error names the tags that exist; a workdir without event files is an error
  naming the directory.
* PNG: one 480 x 160 panel per tag, each with a drawn curve (pixels off the white background inside the
  axes).
* ``--schedule``: the table equals Eq. 3.19 (``vidjax.train.joint.scale_schedule_curve``, Fig. 3.12)
  at the sampled steps.
"""
import os
import re
import struct
import warnings

import numpy as np
import pytest
from PIL import Image

from vidjax.tools import curves


def _crc32c_bitwise(data: bytes) -> int:
  crc = 0xFFFFFFFF
  for b in data:
    crc ^= b
    for _ in range(8):
      crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
  return crc ^ 0xFFFFFFFF


def _write(logdir, values, suffix):
  from tensorboardX import SummaryWriter
  w = SummaryWriter(logdir, filename_suffix=suffix)
  for step, row in values.items():
    for tag, v in row.items():
      w.add_scalar(tag, v, step)
  w.close()


def _f32(x):
  return float(np.float32(x))


RUN1 = {s: {"train/ce": 2.0 / s + 0.1, "train/alpha": 0.5 + 0.01 * s} for s in range(1, 7)}
RUN2 = {s: {"train/ce": 3.0 / s, "train/alpha": 0.25 + 0.02 * s, "val/top1": 0.1 * s} for s in range(6, 11)}


@pytest.fixture
def workdir(tmp_path):
  logdir = str(tmp_path / "tensorboard")
  # the second (resumed) writer sorts first by name: merging must follow the time the files were written
  _write(logdir, RUN1, ".b")
  _write(logdir, RUN2, ".a")
  return str(tmp_path)


def _parse_text_table(text):
  lines = text.strip().splitlines()
  header = lines[0].split()
  rows = [ln.split() for ln in lines[1:]]
  return header, rows


def test_masked_crc32c_matches_bitwise_castagnoli():
  assert _crc32c_bitwise(b"123456789") == 0xE3069283  # the standard CRC-32C check value
  for data in (b"123456789", struct.pack("<Q", 1234), bytes(range(200))):
    c = _crc32c_bitwise(data)
    assert curves._masked_crc(data) == ((((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def test_read_resumed_run_exactly(workdir):
  assert len(curves.event_files(workdir)) == 2
  s = curves.read_scalars(workdir)
  assert sorted(s) == ["train/alpha", "train/ce", "val/top1"]
  expected = {}
  for run in (RUN1, RUN2):  # later run wins on step 6
    for step, row in run.items():
      for tag, v in row.items():
        expected.setdefault(tag, {})[step] = _f32(v)
  for tag, by_step in expected.items():
    assert s[tag] == sorted(by_step.items())
  assert dict(s["train/ce"])[6] == _f32(3.0 / 6) != _f32(2.0 / 6 + 0.1)


def test_table_samples_first_and_last(workdir):
  s = curves.read_scalars(workdir)
  tags = ["train/ce", "val/top1"]
  header, rows = _parse_text_table(curves.table(s, tags, points=4))
  assert header == ["step"] + tags
  steps = [int(r[0]) for r in rows]
  assert len(steps) == 4 and steps[0] == 1 and steps[-1] == 10 and steps == sorted(set(steps))
  ce, top1 = dict(s["train/ce"]), dict(s["val/top1"])
  for r in rows:
    st = int(r[0])
    assert float(r[1]) == pytest.approx(ce[st], rel=1e-5)
    assert (r[2] == "-") if st not in top1 else float(r[2]) == pytest.approx(top1[st], rel=1e-5)
  # more points than steps: every step once
  _, rows = _parse_text_table(curves.table(s, ["train/ce"], points=50))
  assert [int(r[0]) for r in rows] == list(range(1, 11))
  md = curves.table(s, tags, points=3, markdown=True).splitlines()
  assert md[0] == "| step | train/ce | val/top1 |" and md[1] == "|---:|---:|---:|" and len(md) == 5
  assert md[2].startswith("| 1 |") and md[-1].startswith("| 10 |")


def test_png_panels_not_blank(tmp_path):
  path = str(tmp_path / "c.png")
  x = np.arange(50)
  series = {"a": (x, np.sin(x / 5.0)), "b": (x, x ** 2.0), "flat": (x, np.ones(50))}
  curves.plot(series, path)
  im = np.asarray(Image.open(path).convert("RGB")).astype(int)
  assert im.shape == (3 * 160, 480, 3)
  for k in range(3):
    inner = im[k * 160 + 25:(k + 1) * 160 - 25, 70:470]  # inside the axes of panel k
    assert (inner != 255).any(axis=-1).sum() > 100


def test_cli_unknown_tag_and_missing_dir(workdir, tmp_path, capsys):
  with pytest.raises(SystemExit) as e:
    curves.main(["--workdir", workdir, "--tags", "train/ce,train/nope"])
  msg = str(e.value)
  assert "train/nope" in msg and all(t in msg for t in ("train/alpha", "train/ce", "val/top1"))
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(curves.CurvesError, match=re.escape(str(empty))):
    curves.read_scalars(str(empty))
  png = str(tmp_path / "w.png")
  out = curves.main(["--workdir", workdir, "--points", "3", "--png", png, "--markdown"])
  assert out.splitlines()[0] == "| step | train/alpha | train/ce | val/top1 |"  # the default tags present
  assert Image.open(png).size == (480, 3 * 160)


def test_truncated_and_corrupt_records(tmp_path):
  logdir = tmp_path / "tensorboard"
  run = {s: {"train/ce": 1.0 + s} for s in range(1, 6)}
  _write(str(logdir), run, "")
  (name,) = os.listdir(logdir)
  path = str(logdir / name)
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:-3])  # the last record (step 5) loses its tail
  with pytest.warns(curves.EventFileWarning, match="truncated"):
    s = curves.read_scalars(str(tmp_path))
  assert s["train/ce"] == [(st, _f32(1.0 + st)) for st in range(1, 5)]
  # a flipped byte in the payload of the (now) last complete record: that record alone is dropped
  records, pos = [], 0
  while pos + 12 <= len(data):
    (n,) = struct.unpack("<Q", data[pos:pos + 8])
    records.append((pos, n))
    pos += 16 + n
  last_pos, last_n = records[-1]
  bad = bytearray(data)
  bad[last_pos + 12 + last_n // 2] ^= 0xFF
  with open(path, "wb") as f:
    f.write(bytes(bad))
  with pytest.warns(curves.EventFileWarning, match="CRC"):
    s = curves.read_scalars(str(tmp_path))
  assert s["train/ce"] == [(st, _f32(1.0 + st)) for st in range(1, 5)]
  with open(path, "wb") as f:
    f.write(data)  # intact again: all five records, no warning
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    s = curves.read_scalars(str(tmp_path))
  assert s["train/ce"] == [(st, _f32(1.0 + st)) for st in range(1, 6)]


@pytest.mark.parametrize("form", ["printed", "shifted"])
def test_schedule_table_is_eq_3_19(form, tmp_path, capsys):
  from vidjax.train import joint
  png = str(tmp_path / "s.png")
  out = curves.main(["--schedule", "200", "--gamma", "0.3", "--lam", "0.4", "--form", form, "--points", "9",
                     "--png", png])
  header, rows = _parse_text_table(out)
  assert header == ["step", "alpha"]
  curve = joint.scale_schedule_curve(200, 0.3, 0.4, form)
  steps = [int(r[0]) for r in rows]
  assert len(steps) == 9 and steps[0] == 0 and steps[-1] == 199
  for r in rows:
    assert float(r[1]) == pytest.approx(float(curve[int(r[0])]), rel=1e-5, abs=1e-7)
  assert Image.open(png).size == (480, 160)
  with pytest.raises(SystemExit, match="gamma"):
    curves.main(["--schedule", "10", "--gamma", "1.5"])
