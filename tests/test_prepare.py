"""``python -m input_pipeline.prepare`` (issue 6, point 2): a TFDS ArrayRecord dataset that
``tfds.builder_from_directory`` reads back, frames as JPEG at a chosen short side, resumable,
parallel over processes; and training/evaluation from it (``config.data.prepared``).
"""
import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from input_pipeline import datasets, pipeline, prepare
from input_pipeline.sources import fake
from input_pipeline.sources.base import BAD_VIDEOS
from input_pipeline.sources.synthetic import SyntheticMotion, write_rawframes
from tests.tiny import tiny_config

UCF = ["ApplyEyeMakeup", "Archery", "YoYo"]


@pytest.fixture(autouse=True)
def _fresh_log():
  BAD_VIDEOS.clear()
  yield
  BAD_VIDEOS.clear()


def _run(*argv):
  return prepare.main(list(argv) + ["--quiet"])


def _records(out, split):
  """Every record's content (proto field order may differ between processes, the content may not)."""
  src = datasets.prepared_source(str(out), split)
  return [{k: (list(v) if k == "frames" else v) for k, v in src.record(i).items()} for i in range(len(src))]


@pytest.fixture(scope="module")
def ucf(tmp_path_factory):
  d = tmp_path_factory.mktemp("ucf")
  written = fake.write_ucf101(str(d / "UCF101"), str(d / "ucfTrainTestlist"), UCF, groups=(1, 8), num_frames=10)
  return d, written


def test_prepare_ucf101_and_read_back_with_tfds(ucf, tmp_path):
  import tensorflow_datasets as tfds
  d, written = ucf
  out = str(tmp_path / "out")
  summary = _run("ucf101", f"--source={d / 'UCF101'}", f"--annotations={d / 'ucfTrainTestlist'}",
                 f"--out={out}", "--short_side=24", "--workers=1", "--videos_per_shard=2")
  assert summary["written"] == {"train": 3, "val": 3} and summary["bad"] == 0
  builder = tfds.builder_from_directory(out)
  assert builder.info.features["label"].names == UCF
  assert {k: v.num_examples for k, v in builder.info.splits.items()} == {"train": 3, "val": 3}
  assert builder.info.splits["train"].num_shards == 2
  ds = builder.as_data_source("val")
  by_id = {s: (UCF.index(c), k) for s, c, k in written[1]["val"]}
  for i in range(len(ds)):
    r = ds[i]
    vid = r["video_id"].decode()
    label, k = by_id[vid]
    assert r["label"] == label and r["num_frames"] == 10 and len(r["frames"]) == 10
    frames = np.stack(r["frames"])
    assert frames.shape == (10, 24, 30, 3)  # 32 x 40 stored at short side 24
    # frames are the written clip (PIL bilinear resize to 24 x 30), up to MPEG-4 + JPEG error
    clip = SyntheticMotion(num_videos=64, num_frames=10, height=32, width=40, num_classes=8).render(k)
    want = np.stack([np.asarray(Image.fromarray(f).resize((30, 24), Image.BILINEAR)) for f in clip])
    assert np.abs(frames.astype(float) - want).mean() < 16


def test_prepared_source_decodes_only_the_sampled_frames_and_matches_tfds(ucf, tmp_path):
  import tensorflow_datasets as tfds
  d, _ = ucf
  out = str(tmp_path / "out")
  _run("ucf101", f"--source={d / 'UCF101'}", f"--annotations={d / 'ucfTrainTestlist'}", f"--out={out}",
       "--short_side=0", "--workers=1", "--splits=val")
  src = datasets.prepared_source(out, "val", "ucf101", 1)
  ref = tfds.builder_from_directory(out).as_data_source("val")
  assert src.class_names == tuple(UCF) and len(src) == len(ref) == 3
  for i in range(3):
    assert src.video_id(i) == ref[i]["video_id"].decode() and src.label(i) == ref[i]["label"]
    idx = np.array([[0, 1, 2], [7, 8, 9]])
    np.testing.assert_array_equal(src.load_clip(i, lambda n: idx), np.stack(ref[i]["frames"])[idx])
  with pytest.raises(Exception, match="split 1"):
    datasets.prepared_source(out, "val", "ucf101", 2)  # prepared from split 1, config asks split 2


def test_resume_writes_only_missing_shards_and_refuses_other_settings(ucf, tmp_path):
  d, _ = ucf
  out = tmp_path / "out"
  args = ["ucf101", f"--source={d / 'UCF101'}", f"--annotations={d / 'ucfTrainTestlist'}", f"--out={out}",
          "--short_side=24", "--workers=1", "--videos_per_shard=1"]
  _run(*args)
  shards = sorted(p for p in os.listdir(out) if "array_record" in p and not p.endswith(".json"))
  assert len(shards) == 6
  records = _records(out, "train") + _records(out, "val")
  mtimes = {p: os.stat(out / p).st_mtime_ns for p in shards}
  # an interrupted run: one shard never finished (no file, no marker) and a temporary file is left
  lost = shards[1]
  os.remove(out / lost)
  os.remove(out / (lost + ".done.json"))
  (out / (lost + ".tmp-999")).write_bytes(b"partial")
  _run(*args)
  assert not any(".tmp-" in p for p in os.listdir(out))
  for p in shards:
    assert (os.stat(out / p).st_mtime_ns == mtimes[p]) == (p != lost)  # only the lost shard rewritten
  assert _records(out, "train") + _records(out, "val") == records
  with pytest.raises(SystemExit, match="short_side"):
    _run(*[a if not a.startswith("--short_side") else "--short_side=32" for a in args])


def test_parallel_workers_write_the_same_dataset(ucf, tmp_path):
  d, _ = ucf
  common = ["ucf101", f"--source={d / 'UCF101'}", f"--annotations={d / 'ucfTrainTestlist'}", "--short_side=24",
            "--videos_per_shard=2", "--splits=train"]
  _run(*common, f"--out={tmp_path / 'one'}", "--workers=1")
  _run(*common, f"--out={tmp_path / 'two'}", "--workers=2")
  assert _records(tmp_path / "one", "train") == _records(tmp_path / "two", "train")
  one = json.load(open(tmp_path / "one" / "vidjax-index-train.json"))
  assert one == json.load(open(tmp_path / "two" / "vidjax-index-train.json"))


def test_prepared_jpeg_frames_train_exactly_like_the_raw_folders(tmp_path):
  """JPEG frame folders already at the stored size are copied byte for byte, so training batches from the
  prepared dataset equal the batches read from the raw folders (same seed, same steps)."""
  classes = ["Holding something", "Poking something"]
  fake.write_sthv1(str(tmp_path / "ss"), str(tmp_path / "ann"), classes, per_split={"train": 4, "val": 2})
  bad = tmp_path / "ss" / "20bn-something-something-v1" / "1002"
  for f in os.listdir(bad):
    os.remove(bad / f)  # an empty folder is left out of the prepared dataset, and listed
  summary = _run("sthv1", f"--source={tmp_path / 'ss'}", f"--annotations={tmp_path / 'ann'}",
                 f"--out={tmp_path / 'out'}", "--short_side=0", "--workers=1")
  assert summary["written"] == {"train": 3, "val": 2} and summary["bad_by_kind"] == {"skipped": 1}
  assert "1002" in open(tmp_path / "out" / "bad_videos.txt").read()
  os.rename(tmp_path / "ss" / "20bn-something-something-v1" / "1002", tmp_path / "gone")
  BAD_VIDEOS.clear()

  c = tiny_config()
  c.model.num_classes = 2
  c.data.dataset, c.data.root, c.data.annotations = "sthv1", str(tmp_path / "ss"), str(tmp_path / "ann")
  c.data.crop_size = c.data.scale_size = 24
  c.data.frames_per_segment, c.data.num_segments = 2, 3
  c.optim.batch_size = 3
  raw = pipeline.build_source(c, "train")
  raw_batches = list(pipeline.train_batches(c, raw, 0, 2))
  c.data.prepared = str(tmp_path / "out")
  prep = pipeline.build_source(c, "train")
  assert [prep.video_id(i) for i in range(len(prep))] == [raw.video_id(i) for i in range(len(raw))]
  for a, b in zip(raw_batches, pipeline.train_batches(c, prep, 0, 2)):
    np.testing.assert_array_equal(a["video"], b["video"])
    np.testing.assert_array_equal(a["label"], b["label"])
  e = next(pipeline.eval_batches(c, pipeline.build_source(c, "val"), 2))
  assert e["video"].shape == (2, 1, 6, 24, 24, 3) and e["mask"].tolist() == [1, 1]


def test_generic_rawframes_list_with_class_names(tmp_path):
  src = SyntheticMotion(num_videos=3, num_frames=5, height=16, width=20)
  lst = write_rawframes(src, str(tmp_path / "f"), str(tmp_path / "l.txt"))
  (tmp_path / "names.txt").write_text("left\nright\nup\n")
  _run("rawframes", f"--source={tmp_path / 'f'}", f"--train_list={lst}", f"--out={tmp_path / 'o'}",
       "--splits=train", "--short_side=8", f"--class_names={tmp_path / 'names.txt'}", "--workers=1")
  p = datasets.prepared_source(str(tmp_path / "o"), "train")
  assert p.class_names == ("left", "right", "up") and [p.label(i) for i in range(3)] == [0, 1, 2]
  clip = p.load_clip(2, lambda n: np.arange(n))
  assert clip.shape == (5, 8, 10, 3)
  raw = np.stack([np.asarray(Image.open(tmp_path / "f" / "train_000002" / f"img_{k:05d}.jpg").convert("RGB")
                             .resize((10, 8), Image.BILINEAR)) for k in range(1, 6)])
  assert np.abs(clip.astype(float) - raw).mean() < 8  # re-encoded at q90 after the resize
