"""Bad input never stops an epoch (issue 6, point 6).

A corrupt or truncated video, a missing or empty frame folder, a list entry with more frames than its
folder holds, a video shorter than a clip, an unknown label: each is logged once with its file name,
skipped or padded by repeating the last frame (as the reference loader clamps indices at the last
frame), and counted by kind in ``BAD_VIDEOS`` (the training summary's ``bad_videos``). A dataset
directory or annotation set that does not match the expected layout raises one error saying what was
expected.
"""
import logging
import os

import numpy as np
import pytest
from PIL import Image

from input_pipeline import datasets, pipeline
from input_pipeline.sources import fake
from input_pipeline.sources.base import BAD_VIDEOS, BadVideoError, DatasetLayoutError
from input_pipeline.sources.rawframes import RawFrames
from input_pipeline.sources.synthetic import SyntheticMotion, write_rawframes, write_videos
from input_pipeline.sources.videos import VideoFiles, read_video_clip
from tests.tiny import tiny_config


@pytest.fixture(autouse=True)
def _fresh_log():
  BAD_VIDEOS.clear()
  yield
  BAD_VIDEOS.clear()


def _config(tmp_path, dataset, list_file, **kw):
  c = tiny_config()
  c.data.dataset, c.data.root = dataset, str(tmp_path / "d")
  c.data.train_list = c.data.val_list = list_file
  c.data.crop_size = c.data.scale_size = 16
  c.optim.batch_size = 4
  for k, v in kw.items():
    c.data[k] = v
  return c


def test_corrupt_and_missing_videos_are_skipped_and_the_epoch_goes_on(tmp_path, caplog):
  src = SyntheticMotion(num_videos=6, num_frames=8, height=16, width=16)
  lst = write_videos(src, str(tmp_path / "d"), str(tmp_path / "list.txt"))
  (tmp_path / "d" / "train_000002.mp4").write_bytes(b"\x00not a video at all" * 10)
  os.remove(tmp_path / "d" / "train_000004.mp4")
  c = _config(tmp_path, "videos", lst)
  source = pipeline.build_source(c, "train")
  with caplog.at_level(logging.WARNING):
    batches = list(pipeline.train_batches(c, source, 0, 3))  # 2 epochs over 6 videos
  assert len(batches) == 3 and all(b["video"].shape == (4, 4, 16, 16, 3) for b in batches)
  assert BAD_VIDEOS.counts()["skipped"] == 2
  assert sorted(os.path.basename(p) for p in BAD_VIDEOS.files("skipped")) == ["train_000002.mp4", "train_000004.mp4"]
  # each bad file is logged once although both epochs read it
  assert sum("train_000002.mp4" in r.getMessage() for r in caplog.records) == 1
  # the replacement of a bad video is the next usable one: labels of bad videos never appear
  labels = np.concatenate([b["label"] for b in batches])
  assert 2 not in labels.tolist() and 4 not in labels.tolist()


def test_unreadable_eval_videos_are_masked_out(tmp_path):
  src = SyntheticMotion(num_videos=3, num_frames=8, height=16, width=16)
  lst = write_videos(src, str(tmp_path / "d"), str(tmp_path / "list.txt"))
  (tmp_path / "d" / "train_000001.mp4").write_bytes(b"garbage")
  c = _config(tmp_path, "videos", lst)
  batches = list(pipeline.eval_batches(c, pipeline.build_source(c, "val"), 4))
  np.testing.assert_array_equal(batches[0]["mask"], [1, 0, 1, 0])
  np.testing.assert_array_equal(batches[0]["index"], [0, 1, 2, -1])  # 1 = unreadable, -1 = padding


def test_truncated_video_keeps_its_decodable_frames(tmp_path):
  src = SyntheticMotion(num_videos=1, num_frames=40, height=32, width=32)
  path = str(tmp_path / "v.mp4")
  fake._write_video(src.render(0), path)
  data = open(path, "rb").read()
  with open(path, "wb") as fh:
    fh.write(data[: len(data) * 2 // 3])  # cut: the container still claims 40 frames
  clip = read_video_clip(path, lambda n: np.array([0, 1, n - 1]))
  assert clip.shape == (3, 32, 32, 3)
  assert BAD_VIDEOS.counts()["padded"] == 1 and BAD_VIDEOS.files("padded") == [path]
  # the missing last frame is the last decodable one repeated: not a copy of frame 0 or 1
  assert np.abs(clip[2].astype(float) - clip[0]).mean() > 3


def test_missing_and_empty_frame_folders_are_skipped(tmp_path):
  src = SyntheticMotion(num_videos=4, num_frames=6, height=16, width=16)
  lst = write_rawframes(src, str(tmp_path / "d"), str(tmp_path / "list.txt"))
  for f in os.listdir(tmp_path / "d" / "train_000001"):
    os.remove(tmp_path / "d" / "train_000001" / f)  # empty folder
  os.rename(tmp_path / "d" / "train_000003", tmp_path / "d" / "elsewhere")  # missing folder
  rf = RawFrames(str(tmp_path / "d"), lst)
  with pytest.raises(BadVideoError, match="empty"):
    rf.load_clip(1, lambda n: np.arange(n))
  with pytest.raises(BadVideoError, match="missing"):
    rf.load_clip(3, lambda n: np.arange(n))
  c = _config(tmp_path, "rawframes", lst)
  c.optim.batch_size = 2
  batches = list(pipeline.train_batches(c, pipeline.build_source(c, "train"), 0, 4))
  assert len(batches) == 4 and BAD_VIDEOS.counts()["skipped"] == 2
  assert {os.path.basename(p) for p in BAD_VIDEOS.files("skipped")} == {"train_000001", "train_000003"}


def test_list_entry_with_more_frames_than_the_folder_is_padded_with_the_last_frame(tmp_path):
  src = SyntheticMotion(num_videos=1, num_frames=6, height=16, width=16)
  write_rawframes(src, str(tmp_path / "d"), str(tmp_path / "list.txt"))
  (tmp_path / "list.txt").write_text("train_000000 10 0\n")  # the folder holds 6
  rf = RawFrames(str(tmp_path / "d"), str(tmp_path / "list.txt"))
  clip = rf.load_clip(0, lambda n: np.arange(n))  # the clip is sampled from the list's 10 frames
  assert clip.shape == (10, 16, 16, 3)
  last = np.asarray(Image.open(tmp_path / "d" / "train_000000" / "img_00006.jpg").convert("RGB"))
  for k in range(5, 10):
    np.testing.assert_array_equal(clip[k], last)
  assert BAD_VIDEOS.counts()["padded"] == 1
  rf.load_clip(0, lambda n: np.arange(n))  # second read: no new log entry, same clamping
  assert BAD_VIDEOS.count == 1


def test_videos_shorter_than_a_clip_repeat_frames_and_are_counted(tmp_path):
  src = SyntheticMotion(num_videos=2, num_frames=3, height=16, width=16)
  lst = write_rawframes(src, str(tmp_path / "d"), str(tmp_path / "list.txt"))
  c = _config(tmp_path, "rawframes", lst, frames_per_segment=3)  # 4 segments x 3 needs 4 + 3 - 1 = 6
  c.optim.batch_size = 2
  b = next(pipeline.train_batches(c, pipeline.build_source(c, "train"), 0, 1))
  assert b["video"].shape == (2, 12, 16, 16, 3)
  assert BAD_VIDEOS.counts()["short"] == 2 and BAD_VIDEOS.counts()["skipped"] == 0


def test_unknown_labels_are_left_out(tmp_path):
  src = SyntheticMotion(num_videos=3, num_frames=6, height=16, width=16)
  write_rawframes(src, str(tmp_path / "d"), str(tmp_path / "list.txt"))
  (tmp_path / "list.txt").write_text("train_000000 6 0\ntrain_000001 6 8\ntrain_000002 6 -1\n")
  c = _config(tmp_path, "rawframes", str(tmp_path / "list.txt"))  # 8 classes: labels 8 and -1 are unknown
  assert len(pipeline.build_source(c, "train")) == 1
  assert BAD_VIDEOS.counts()["unknown_label"] == 2
  # official formats: a Kinetics label outside the 400, an SS V1 label not in the labels file
  fake.write_kinetics(str(tmp_path / "k"), str(tmp_path / "ka"), ["abseiling", "flying carpet riding"])
  k = datasets.raw_source("kinetics400", str(tmp_path / "k"), "train", annotations=str(tmp_path / "ka"))
  assert len(k) == 2 and all(k.label(i) == 0 for i in range(2))
  fake.write_sthv1(str(tmp_path / "s"), str(tmp_path / "sa"), ["Holding something", "Poking something"])
  with open(tmp_path / "sa" / "something-something-v1-train.csv", "a") as fh:
    fh.write("1001;Juggling something while riding a unicycle\n")
  s = datasets.raw_source("sthv1", str(tmp_path / "s"), "train", annotations=str(tmp_path / "sa"))
  assert len(s) == 4
  assert BAD_VIDEOS.counts()["unknown_label"] == 2 + 2 + 1


def test_annotation_entries_without_files_are_counted_as_missing(tmp_path):
  written = fake.write_kinetics(str(tmp_path / "k"), str(tmp_path / "a"), ["abseiling", "zumba"])
  gone = written["train"][1][0]
  os.remove(os.path.join(tmp_path, "k", "train", "zumba", gone + ".mp4"))
  src = datasets.raw_source("kinetics400", str(tmp_path / "k"), "train", annotations=str(tmp_path / "a"))
  assert len(src) == 3 and gone not in [src.video_id(i) for i in range(3)]
  assert BAD_VIDEOS.counts()["missing"] == 1 and gone in BAD_VIDEOS.files("missing")[0]


def test_wrong_layout_gets_one_clear_error(tmp_path):
  fake.write_kinetics(str(tmp_path / "k"), str(tmp_path / "a"), ["abseiling"], per_split={"train": 2})
  (tmp_path / "other").mkdir()
  (tmp_path / "other" / "clip1.mp4").write_bytes(b"x")
  with pytest.raises(DatasetLayoutError, match=r"none of the 2 videos .* Expected: video files or frame folders named <youtube_id>_<time_start:06d>"):
    datasets.raw_source("kinetics400", str(tmp_path / "other"), "train", annotations=str(tmp_path / "a"))
  with pytest.raises(DatasetLayoutError, match=r"does not exist .* Expected"):
    datasets.raw_source("kinetics400", str(tmp_path / "nope"), "train", annotations=str(tmp_path / "a"))
  with pytest.raises(DatasetLayoutError, match=r"validate.csv.*config.data.annotations"):
    datasets.raw_source("kinetics400", str(tmp_path / "k"), "val", annotations=str(tmp_path / "a"))
  (tmp_path / "bad.csv").write_text("name,url\nx,y\n")
  with pytest.raises(DatasetLayoutError, match="label,youtube_id,time_start,time_end,split"):
    datasets.raw_source("kinetics400", str(tmp_path / "k"), "train", explicit_list=str(tmp_path / "bad.csv"))
  with pytest.raises(DatasetLayoutError, match="something-something-v1-labels.csv"):
    datasets.raw_source("sthv1", str(tmp_path / "k"), "train", annotations=str(tmp_path / "a"))
  with pytest.raises(DatasetLayoutError, match="testTrainMulti_7030_splits"):
    datasets.raw_source("hmdb51", str(tmp_path / "k"), "train", annotations=str(tmp_path / "a"))
  with pytest.raises(DatasetLayoutError, match="trainlist02.txt"):
    datasets.raw_source("ucf101", str(tmp_path / "k"), "train", annotations=str(tmp_path / "a"), split_id=2)
  with pytest.raises(DatasetLayoutError, match="input_pipeline.prepare"):
    datasets.prepared_source(str(tmp_path / "k"), "train")


def test_evaluation_leaves_unreadable_videos_out_and_counts_them(tmp_path):
  """vidjax.evaluate: results.json reports the bad input; per-video scores name only the read videos."""
  import json

  import jax
  import jax.numpy as jnp

  from vidjax import config_utils
  from vidjax.evaluate import evaluate
  from vidjax.models import registry

  src = SyntheticMotion(num_videos=4, num_frames=8, height=16, width=16)
  lst = write_videos(src, str(tmp_path / "d"), str(tmp_path / "list.txt"))
  (tmp_path / "d" / "train_000002.mp4").write_bytes(b"garbage")
  c = _config(tmp_path, "videos", lst, test_clips=2)
  model = registry.build(c.model)
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros(config_utils.input_shape(c)), train=False)
  r = evaluate(c, str(tmp_path / "w"), variables=variables, step=0)
  assert r["num_videos"] == 3 and r["videos_listed"] == 4 and r["unreadable_videos"] == 1
  assert r["bad_videos"] == 1 and r["bad_video_counts"]["skipped"] == 1 and r["views"] == 2
  saved = json.load(open(tmp_path / "w" / "results.json"))
  assert saved["unreadable_videos"] == 1
  scores = np.load(tmp_path / "w" / "val_scores.npz")
  assert sorted(scores["ids"].tolist()) == ["train_000000.mp4", "train_000001.mp4", "train_000003.mp4"]
  k = c.model.num_classes
  assert scores["logits"].shape == (3, k) and len(scores["class_names"]) == k
