"""Temporal projections of chapter 3 as pure functions (no parameters).

* :func:`project_onto_columns`: least-squares coefficients ``y = (A^T A)^-1 A^T x`` of thesis Eq. 3.4
  (Temporal Squeeze Pooling) and Eq. 3.7 (Pixel-Wise Temporal Projection), batched over any leading
  axes, solved without forming an inverse.
* :func:`reconstruct` / :func:`projection_residual`: ``x_hat = A y`` (Eq. 3.4 / 3.7) and
  ``p = x - x_hat`` (Eq. 3.11).
* :func:`temporal_relation_descriptor`: ``u_i = {x~_i^{t1} . x~_i^{t2} / C' : t1 < t2}`` (Eq. 3.9).
* :func:`approximate_rank_pooling_weights` / :func:`dynamic_image`: the Dynamic Image baseline of
  Table 3.12 (Bilen et al., approximate rank pooling).
* :func:`rgb_difference`: the RGB-difference baseline of Table 3.12 (TSN, consecutive frame
  differences).

Solvers of :func:`project_onto_columns` (all give the same ``y`` for a full-column-rank ``A``):

* ``"cholesky"`` (default): normal equations ``(A^T A + ridge I) y = A^T x`` by a Cholesky solve;
  ``D = 1`` is the exact closed form ``a.x / a.a``. Fast; squares the condition number of ``A``.
* ``"qr"``: ``A = QR``, ``y = R^-1 Q^T x`` (triangular solve); better conditioned, no ridge.
* ``"pinv"``: ``y = A^+ x`` by SVD: the minimum-norm least-squares solution, which is what
  ``numpy.linalg.lstsq`` returns, also for a rank-deficient ``A``.

Rank deficiency (a column of ``A`` that is a combination of the others, e.g. a zero column from a ReLU
in the TSP excitation): with ``ridge = 0`` the Cholesky/QR solves divide by zero and give inf/NaN.
When ``A`` is a concrete array (not traced under ``jit``/``grad``), ``check_rank=True`` (the default)
raises a ``ValueError`` naming the problem and the remedies; under tracing use ``ridge > 0`` (Tikhonov
regularisation: ``y = (A^T A + ridge I)^-1 A^T x``) or ``solver="pinv"``.

Layout: ``A`` is ``(..., K, D)`` (K frames, D basis vectors) and ``x`` is ``(..., K, M)``: M vectors of
length K that share one ``A`` (TSP: all ``H*W*C`` pixel-channel vectors of a clip; PWTP: the C
channels of one pixel). The projection always runs in float32 (or wider if the inputs are wider).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

SOLVERS = ("cholesky", "qr", "pinv")


def _compute_dtype(*arrays):
  return jnp.promote_types(jnp.result_type(*arrays), jnp.float32)


def check_full_column_rank(a, rtol: float | None = None) -> None:
  """Raises ``ValueError`` if any ``A`` in the batch ``(..., K, D)`` has rank < D (concrete arrays only)."""
  a = np.asarray(a, dtype=np.float64)
  k, d = a.shape[-2:]
  if d > k:
    raise ValueError(f"project_onto_columns: A has D={d} columns but only K={k} rows; "
                     "the D columns of a K x D matrix cannot be independent when D > K")
  if d == 1:  # one column: independent iff non-zero
    bad = ~np.any(a.reshape(-1, k) != 0, axis=-1)
  else:
    s = np.linalg.svd(a.reshape(-1, k, d), compute_uv=False)
    tol = (rtol if rtol is not None else max(k, d) * np.finfo(np.float32).eps) * s[:, :1]
    bad = np.sum(s > tol, axis=-1) < d
  if np.any(bad):
    raise ValueError(
        f"project_onto_columns: {int(bad.sum())} of {bad.size} matrices A (K={k}, D={d}) are rank-deficient "
        "(columns not linearly independent, thesis Eq. 3.3 requires Phi(A') to have independent columns); "
        "(A^T A)^-1 does not exist. Use ridge > 0 (regularised solve) or solver='pinv' (minimum-norm "
        "least squares).")


def project_onto_columns(a, x, *, ridge: float = 0.0, solver: str = "cholesky",
                         check_rank: bool = True):
  """Least-squares coefficients of ``x`` in the column space of ``A`` (thesis Eq. 3.4 / 3.7).

  Args:
    a: ``(..., K, D)`` basis matrices.
    x: ``(..., K, M)`` vectors to project (broadcast against ``a``'s leading axes).
    ridge: Tikhonov term added to ``A^T A`` (``"cholesky"`` only); 0 is the plain projection.
    solver: ``"cholesky"`` | ``"qr"`` | ``"pinv"`` (see the module docstring).
    check_rank: raise a ``ValueError`` for a rank-deficient concrete ``A`` when ``ridge == 0`` and the
      solver is not ``"pinv"`` (skipped under ``jit``/``grad`` tracing).
  Returns:
    ``y`` of shape ``(..., D, M)`` with ``A y`` the orthogonal projection of ``x`` (float32 or wider).
  """
  if solver not in SOLVERS:
    raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
  if ridge < 0:
    raise ValueError(f"ridge must be >= 0, got {ridge}")
  if ridge and solver != "cholesky":
    raise ValueError("ridge regularisation is only implemented for solver='cholesky'")
  dt = _compute_dtype(a, x)
  a = jnp.asarray(a, dt)
  x = jnp.asarray(x, dt)
  k, d = a.shape[-2:]
  if x.shape[-2] != k:
    raise ValueError(f"project_onto_columns: A has K={k} rows but x has {x.shape[-2]}")
  if check_rank and ridge == 0 and solver != "pinv" and not isinstance(a, jax.core.Tracer):
    check_full_column_rank(a)

  if solver == "pinv":
    return jnp.linalg.pinv(a) @ x
  if solver == "qr":
    q, r = jnp.linalg.qr(a, mode="reduced")  # q (..., K, D), r (..., D, D) upper triangular
    qtx = jnp.swapaxes(q, -1, -2) @ x
    r = jnp.broadcast_to(r, qtx.shape[:-2] + (d, d))
    return jax.scipy.linalg.solve_triangular(r, qtx, lower=False)
  # Normal equations (A^T A + ridge I) y = A^T x.
  atx = jnp.swapaxes(a, -1, -2) @ x  # (..., D, M)
  if d == 1:  # closed form of the 1 x 1 system: y = a.x / (a.a + ridge)
    ata = jnp.sum(a * a, axis=-2, keepdims=True)  # (..., 1, 1)
    return atx / (ata + ridge)
  ata = jnp.swapaxes(a, -1, -2) @ a
  if ridge:
    ata = ata + ridge * jnp.eye(d, dtype=dt)
  ata = jnp.broadcast_to(ata, atx.shape[:-2] + (d, d))
  chol = jnp.linalg.cholesky(ata)
  return jax.scipy.linalg.cho_solve((chol, True), atx)


def reconstruct(a, y):
  """``x_hat = A y`` (Eq. 3.4 / 3.7): ``(..., K, D) @ (..., D, M) -> (..., K, M)``."""
  return jnp.asarray(a, jnp.result_type(a, y)) @ y


def projection_residual(a, x, y=None, **solve_kwargs):
  """``p = x - A y`` (Eq. 3.11); solves for ``y`` first when it is not given."""
  if y is None:
    y = project_onto_columns(a, x, **solve_kwargs)
  xf = jnp.asarray(x, y.dtype)
  return xf - reconstruct(a, y)


def temporal_relation_descriptor(xt):
  """Eq. 3.9: pairwise frame similarities of every position.

  Args:
    xt: ``(..., T, C')`` features of T frames at one position (``x~_i`` of Eq. 3.8).
  Returns:
    ``(..., T(T-1)/2)``: ``x~^{t1} . x~^{t2} / C'`` for ``t1 < t2`` in ascending ``(t1, t2)`` order
    (row-major upper triangle of the T x T Gram matrix).
  """
  t, c = xt.shape[-2:]
  gram = jnp.einsum("...tc,...sc->...ts", xt, xt) / c
  i, j = np.triu_indices(t, k=1)
  return gram[..., i, j]


def approximate_rank_pooling_weights(num_frames: int) -> np.ndarray:
  """Approximate rank pooling coefficients (Bilen et al., Dynamic Image Networks, CVPR 2016).

  ``alpha_t = 2(T - t + 1) - (T + 1)(H_T - H_{t-1})``, ``t = 1..T``, ``H_t = sum_{i<=t} 1/i`` (H_0 = 0);
  the dynamic image is ``sum_t alpha_t x_t``. Returned as float64 ``(T,)``.
  """
  t_ = num_frames
  harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, t_ + 1))])  # H_0..H_T
  t = np.arange(1, t_ + 1)
  return 2.0 * (t_ - t + 1) - (t_ + 1) * (harmonic[t_] - harmonic[t - 1])


def dynamic_image(x, axis: int = 1):
  """Dynamic image of the frames along ``axis`` (approximate rank pooling, Table 3.12 baseline)."""
  t = x.shape[axis]
  w = jnp.asarray(approximate_rank_pooling_weights(t), jnp.promote_types(x.dtype, jnp.float32))
  shape = [1] * x.ndim
  shape[axis] = t
  return jnp.sum(x * w.reshape(shape), axis=axis)


def rgb_difference(x, axis: int = 1):
  """Consecutive frame differences ``x_{t+1} - x_t`` along ``axis`` (T frames -> T-1 differences)."""
  t = x.shape[axis]
  return (jax.lax.slice_in_dim(x, 1, t, axis=axis) - jax.lax.slice_in_dim(x, 0, t - 1, axis=axis))


def num_pairs(num_frames: int) -> int:
  """``T(T-1)/2``: the length of the temporal relation descriptor (Eq. 3.9), C_in of the PWTP MLP."""
  return math.comb(num_frames, 2)
