"""Fixed filter kernels of the Motion Band-Pass Module (thesis section 5.3, REFERENCE.md section 6).

* ``log_kernel``: the ``k x k`` Laplacian of Gaussian of Eq. 5.2 sampled on the integer grid centred
  on the kernel, ``LoG(x, y) = -1 / (pi sigma^4) (1 - r^2 / (2 sigma^2)) exp(-r^2 / (2 sigma^2))``,
  then divided by its own sum, as the author's code (``src/bpf.py``, class ``LoG``) builds it and as
  Eq. 5.3 states ("the sum of kernel values is normalized to 1").
  The raw sum of a sampled LoG is close to zero and *negative* (sigma 1.1, k 9: -7.81e-4), so the
  normalised kernel is large and sign-flipped: positive centre 278.38, minimum -37.60. For sigma 0.9,
  k 3 (last BQN stage) the raw sum is -0.753 and the kernel is a positive blur-like one.
  The kernel is evaluated in float64 and rounded once to the output dtype. The reference evaluates it
  in float32, where the cancelling sum carries a relative error of ~5e-5 that depends on torch's
  summation order (its centre is 278.3846 vs 278.3977 here); load the reference's state_dict for
  bit-level comparisons.
* ``temporal_kernel``: the finite-difference second derivative in time of Eq. 5.1,
  ``h = [-1, 2, -1] / 3`` (a high-pass filter).

Both are pure functions returning NumPy arrays; ``vidjax.modules.bandpass`` uses them to initialise
the trainable kernels.
"""
from __future__ import annotations

import numpy as np


def log_kernel(sigma: float, kernel_size: int, dtype=np.float32) -> np.ndarray:
  """The normalised ``(kernel_size, kernel_size)`` LoG kernel of Eq. 5.2 / Eq. 5.3.

  Args:
    sigma: scale of the Gaussian (1.1 in the Busy stem, 0.9 in the lateral connections).
    kernel_size: k (9 in the stem; 7, or 3 in the last stage, in the lateral connections).
    dtype: dtype of the returned array.
  Returns:
    ``K / K.sum()`` with ``K`` the sampled LoG; ``K[i, j]`` is at ``x = i - (k-1)/2, y = j - (k-1)/2``.
  """
  if kernel_size < 1:
    raise ValueError(f"kernel_size must be positive, got {kernel_size}")
  a = np.arange(kernel_size, dtype=np.float64) - (kernel_size - 1) / 2.0
  x, y = np.meshgrid(a, a, indexing="ij")
  q = (x * x + y * y) / (2.0 * sigma * sigma)
  k = -1.0 / (np.pi * sigma ** 4) * (1.0 - q) * np.exp(-q)
  total = k.sum()
  if total == 0.0:
    raise ValueError(f"LoG kernel (sigma={sigma}, k={kernel_size}) sums to zero; cannot normalise")
  return (k / total).astype(dtype)


def temporal_kernel(dtype=np.float32) -> np.ndarray:
  """``h`` of Eq. 5.1 over frames (t-1, t, t+1): ``[-1/3, 2/3, -1/3]``."""
  return (np.array([-1.0, 2.0, -1.0], dtype=np.float64) / 3.0).astype(dtype)
