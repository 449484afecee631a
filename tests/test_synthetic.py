"""The built-in motion dataset: determinism, balance, motion-only labels, and its on-disk layouts."""
import os

import numpy as np
import pytest

from input_pipeline.sources.rawframes import RawFrames
from input_pipeline.sources.synthetic import SyntheticMotion, write_rawframes, write_videos
from input_pipeline.sources.videos import VideoFiles
from input_pipeline.sources.base import BadVideoError


def test_deterministic_and_split_dependent():
  a = SyntheticMotion(num_videos=4, num_frames=6, height=24, width=32)
  b = SyntheticMotion(num_videos=4, num_frames=6, height=24, width=32)
  v = SyntheticMotion(num_videos=4, num_frames=6, height=24, width=32, split="val")
  assert a[2]["video"].shape == (6, 24, 32, 3) and a[2]["video"].dtype == np.uint8
  np.testing.assert_array_equal(a[2]["video"], b[2]["video"])
  assert not np.array_equal(a[2]["video"], v[2]["video"])
  assert [a.label(i) for i in range(4)] == [0, 1, 2, 3]


def _object_mask(src, i):
  # The object is where the frame differs from the median over time (background is static up to jitter).
  video = src[i]["video"].astype(np.float32)
  return np.abs(video - np.median(video, 0)).sum(-1) > 60


def test_a_single_frame_carries_no_label():
  """The middle frame's object centre and size have the same distribution for every class."""
  src = SyntheticMotion(num_videos=8 * 40, num_frames=9, height=48, width=48, noise=0.0, jitter=0.0)
  stats = {c: [] for c in range(8)}
  rng = np.random.default_rng(0)
  for i in range(len(src)):
    v = src.render(i).astype(np.float32)
    diff = np.abs(v[4] - v[0]).sum(-1) + np.abs(v[4] - v[8]).sum(-1)
    ys, xs = np.nonzero(diff > 30)
    if len(ys):
      stats[src.label(i)].append((ys.mean(), xs.mean()))
  means = np.array([np.mean(stats[c], 0) for c in range(8)])
  # all classes centre their middle frame near the image centre (no class sits on one side)
  assert np.all(np.abs(means - 24) < 4), means


def test_motion_differs_between_classes():
  src = SyntheticMotion(num_videos=8, num_frames=8, height=48, width=48, noise=0.0, jitter=0.0)
  for i in (0, 1):  # left, right: object centre of mass moves in x
    v = src.render(i).astype(np.float32)
    bg = np.median(v, 0)
    xs = []
    for f in (0, 7):
      m = np.abs(v[f] - bg).sum(-1) > 60
      xs.append(np.nonzero(m)[1].mean())
    assert (xs[1] - xs[0] < 0) == (i == 0)


def test_rawframes_round_trip(tmp_path):
  src = SyntheticMotion(num_videos=3, num_frames=5, height=24, width=24)
  lst = write_rawframes(src, str(tmp_path / "frames"), str(tmp_path / "train.txt"))
  lines = open(lst).read().split("\n")
  assert lines[0] == "train_000000 5 0"
  assert os.path.isfile(tmp_path / "frames" / "train_000001" / "img_00005.jpg")
  rf = RawFrames(str(tmp_path / "frames"), lst)
  clip = rf.load_clip(1, lambda f: np.array([0, 4, 4]))
  video = src[1]["video"].astype(np.float32)
  err = np.abs(clip - video[[0, 4, 4]]).mean()  # JPEG (4:2:0 chroma) of a noisy texture
  assert clip.shape == (3, 24, 24, 3) and err < 12
  assert np.abs(clip - video[[2, 1, 0]]).mean() > 1.5 * err  # and they are the frames asked for
  assert rf.label(2) == 2


def test_videos_round_trip(tmp_path):
  src = SyntheticMotion(num_videos=2, num_frames=6, height=32, width=32)
  lst = write_videos(src, str(tmp_path / "videos"), str(tmp_path / "list.txt"))
  vf = VideoFiles(str(tmp_path / "videos"), lst)
  clip = vf.load_clip(0, lambda f: np.arange(f))
  assert clip.shape == (6, 32, 32, 3)
  err = np.abs(clip.astype(np.float32) - src[0]["video"]).mean()  # H.264 crf 12, 4:2:0
  assert err < 14
  assert np.abs(clip.astype(np.float32) - src[0]["video"][::-1]).mean() > 1.5 * err


def test_missing_and_corrupt_files_name_the_file(tmp_path):
  src = SyntheticMotion(num_videos=2, num_frames=4, height=16, width=16)
  lst = write_videos(src, str(tmp_path / "v"), str(tmp_path / "l.txt"))
  with open(tmp_path / "v" / "train_000001.mp4", "wb") as fh:
    fh.write(b"not a video")
  vf = VideoFiles(str(tmp_path / "v"), lst)
  with pytest.raises(BadVideoError, match="train_000001.mp4"):
    vf.load_clip(1, lambda f: np.arange(f))
  os.remove(tmp_path / "v" / "train_000000.mp4")
  with pytest.raises(BadVideoError, match="missing"):
    vf.load_clip(0, lambda f: np.arange(f))
  with pytest.raises(FileNotFoundError, match="train_list"):
    VideoFiles(str(tmp_path / "v"), str(tmp_path / "nope.txt"))
  (tmp_path / "bad.txt").write_text("a.mp4 notanint\n")
  with pytest.raises(ValueError, match="bad.txt"):
    VideoFiles(str(tmp_path / "v"), str(tmp_path / "bad.txt"))
