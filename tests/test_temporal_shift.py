"""TSM shift (REFERENCE.md section 2) against a NumPy loop written from the spec."""
import numpy as np
import pytest

from vidjax.ops.temporal_shift import temporal_shift


def numpy_shift(x, t, fold_div):
  nt, h, w, c = x.shape
  v = x.reshape(nt // t, t, h, w, c)
  out = np.zeros_like(v)
  fold = c // fold_div
  for n in range(v.shape[0]):
    for i in range(t):
      for ch in range(c):
        if ch < fold:  # frame i takes frame i+1 ("shift left"), zero at the clip end
          out[n, i, ..., ch] = v[n, i + 1, ..., ch] if i + 1 < t else 0
        elif ch < 2 * fold:  # frame i takes frame i-1, zero at the clip start
          out[n, i, ..., ch] = v[n, i - 1, ..., ch] if i - 1 >= 0 else 0
        else:
          out[n, i, ..., ch] = v[n, i, ..., ch]
  return out.reshape(x.shape)


@pytest.mark.parametrize("t,c,div", [(8, 16, 8), (3, 24, 8), (4, 10, 4), (1, 16, 8)])
def test_matches_reference_spec(t, c, div):
  x = np.random.default_rng(0).normal(size=(2 * t, 3, 2, c)).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(temporal_shift(x, t, div)), numpy_shift(x, t, div))


def test_rejects_batch_not_multiple_of_frames():
  with pytest.raises(ValueError, match="multiple"):
    temporal_shift(np.zeros((7, 2, 2, 8), np.float32), 2)
