"""Loader determinism: the batch of a step does not depend on where the run started."""
import numpy as np

from input_pipeline import pipeline
from tests.tiny import tiny_config


def test_batches_are_a_function_of_the_step():
  c = tiny_config()
  src = pipeline.build_source(c, "train")
  full = list(pipeline.train_batches(c, src, 0, 6))
  resumed = list(pipeline.train_batches(c, src, 4, 6))
  assert len(full) == 6 and len(resumed) == 2
  for a, b in zip(full[4:], resumed):
    np.testing.assert_array_equal(a["video"], b["video"])
    np.testing.assert_array_equal(a["label"], b["label"])
  assert full[0]["video"].shape == (8, 4, 32, 32, 3) and full[0]["video"].dtype == np.uint8


def test_every_video_once_per_epoch_with_new_order():
  c = tiny_config()
  src = pipeline.build_source(c, "train")
  ds = pipeline.train_dataset(c, src, 8)  # 2 epochs of 4 batches of 8 (32 videos)
  # labels are index % K: every epoch holds the same multiset of labels, the 32 videos' labels
  k = c.data.synthetic.num_classes
  e0 = np.concatenate([ds[i]["label"] for i in range(4)])
  e1 = np.concatenate([ds[i]["label"] for i in range(4, 8)])
  expected = np.bincount(np.arange(32) % k, minlength=k).tolist()
  assert np.bincount(e0, minlength=k).tolist() == expected
  assert np.bincount(e1, minlength=k).tolist() == expected
  assert not np.array_equal(e0, e1)


def test_eval_batches_pad_and_mask():
  c = tiny_config()
  c.data.synthetic.num_val = 5
  c.data.test_clips = 2
  src = pipeline.build_source(c, "val")
  batches = list(pipeline.eval_batches(c, src, 4))
  assert len(batches) == 2
  assert batches[0]["video"].shape == (4, 2, 4, 32, 32, 3)
  mask = np.concatenate([b["mask"] for b in batches])
  np.testing.assert_array_equal(mask, [1, 1, 1, 1, 1, 0, 0, 0])
