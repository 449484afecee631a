"""TSN segment / dense sampling and test views (REFERENCE.md section 10, reference ops/dataset.py)."""
import numpy as np
import pytest

from input_pipeline import sampling, transforms


def test_train_segments_fall_in_their_segment():
  # avg = (F - L + 1) // S; segment k starts in [k * avg, (k + 1) * avg).
  rng = np.random.default_rng(0)
  for f, s, l in [(100, 8, 1), (48, 8, 3), (30, 16, 1)]:
    avg = (f - l + 1) // s
    for _ in range(50):
      st = sampling.segment_starts(f, s, l, rng)
      assert np.all(st >= np.arange(s) * avg) and np.all(st < (np.arange(s) + 1) * avg)


def test_val_segments_are_centres():
  # tick = (F - L + 1) / S; offsets int(tick / 2 + tick * k): for F=50, S=8, L=3: tick 6.
  np.testing.assert_array_equal(sampling.segment_starts(50, 8, 3), [3, 9, 15, 21, 27, 33, 39, 45])
  twice = sampling.segment_starts(50, 8, 3, twice=True)
  np.testing.assert_array_equal(twice[1], [0, 6, 12, 18, 24, 30, 36, 42])


def test_exactly_enough_frames_takes_every_frame():
  # F == S + L - 1: tick = 1, centres int(0.5 + k) = k (the reference would return frame 0 S times).
  np.testing.assert_array_equal(sampling.clip_indices(8, 8, 1, "segment"), np.arange(8))
  np.testing.assert_array_equal(sampling.test_clip_indices(8, 8, 1, "segment", 1)[0], np.arange(8))


def test_short_video_repeats_last_frame():
  # 5 frames, 4 segments of 3: zeros offsets; consecutive frames clamp at the last frame.
  idx = sampling.clip_indices(5, 4, 3, "segment")
  assert idx.max() <= 4 and idx.shape == (12,)
  np.testing.assert_array_equal(sampling.expand_segments(np.array([3]), 3, 5), [3, 4, 4])


def test_dense_sampling():
  # data_length 1: T frames with stride 64 // T; data_length 3: 3T consecutive frames.
  np.testing.assert_array_equal(sampling.dense_indices(300, 8, 1, start=10), 10 + 8 * np.arange(8))
  np.testing.assert_array_equal(sampling.dense_indices(300, 8, 3, start=10), 10 + np.arange(24))
  clips = sampling.test_clip_indices(300, 8, 3, "dense", 10)
  assert clips.shape == (10, 24)
  np.testing.assert_array_equal(clips[:, 0], np.linspace(0, 300 - 24, 10, dtype=int))
  rng = np.random.default_rng(0)
  starts = [sampling.dense_start(100, 8, 3, rng) for _ in range(200)]
  assert min(starts) >= 0 and max(starts) < 100 - 24


def test_fixed_offsets_and_multiscale_sizes():
  offs = transforms.fixed_offsets(340, 256, 224, 224)
  assert len(offs) == 13 and (0, 0) in offs and (116, 32) in offs and (58, 16) in offs
  rng = np.random.default_rng(0)
  sizes = set()
  for _ in range(300):
    x, y, w, h = transforms.multi_scale_crop_box(340, 256, 224, rng)
    sizes.add((w, h))
    assert x + w <= 340 and y + h <= 256
  # scales 1, .875, .75, .66 of 256 -> 256, 224 (snapped), 192, 168; |i - j| <= 1 pairs.
  assert sizes == {(256, 256), (224, 256), (256, 224), (224, 224), (192, 224), (224, 192), (192, 192),
                   (168, 192), (192, 168), (168, 168)}


def test_three_crops_cover_left_right_centre():
  frames = np.arange(2 * 256 * 340 * 3, dtype=np.uint32).reshape(2, 256, 340, 3).astype(np.uint8)
  views = transforms.val_views(frames, 256, 256, num_crops=3)
  assert views.shape == (3, 2, 256, 256, 3)
  np.testing.assert_array_equal(views[0], frames[:, :, :256])
  np.testing.assert_array_equal(views[1], frames[:, :, 84:])


def test_train_augment_same_crop_for_all_frames():
  rng = np.random.default_rng(3)
  frame = np.random.default_rng(1).integers(0, 255, (1, 64, 80, 3), dtype=np.uint8)
  out = transforms.train_augment(np.repeat(frame, 4, 0), 48, rng)
  assert out.shape == (4, 48, 48, 3)
  assert all(np.array_equal(out[0], out[i]) for i in range(4))
