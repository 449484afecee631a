"""Which frames make a clip: TSN segment sampling, dense sampling and test views.

All indices are 0-based frame numbers (file ``img_00001.jpg`` is frame 0). A clip is ``S`` segments of
``L`` consecutive frames (``L = 3`` for MBPM/BQN triplets, 1 for TSM/RNL); consecutive frames past the
end repeat the last frame, as the reference loader does (REFERENCE.md section 10).

* ``segment_starts``: TSN uniform sampling. Train: ``avg = (F - L + 1) // S``, start of segment k is
  ``k * avg + randint(avg)``; when ``avg == 0`` sorted random starts (or zeros). Val/test: centre of
  each segment, ``int(tick / 2 + tick * k)`` with ``tick = (F - L + 1) / S``; ``twice`` adds the
  segment starts ``int(tick * k)`` (the 2 clips of Something-Something testing).
* ``dense_starts``: ``S * L`` consecutive frames (``L > 1``, BQN on K400) or ``S`` frames with stride
  ``64 // S`` in a 64-frame window (``L == 1``, TSM on K400), from a random start (train) and from
  ``linspace(0, F - span, num_clips)`` at test time. Indices wrap modulo F as in the reference.
"""
from __future__ import annotations

from typing import Optional

import numpy as np


def expand_segments(starts: np.ndarray, length: int, num_frames: int) -> np.ndarray:
  """``S`` segment starts -> ``S * L`` frame indices (consecutive, clamped at the last frame)."""
  starts = np.asarray(starts, dtype=np.int64)
  idx = starts[:, None] + np.arange(length)[None, :]
  return np.minimum(idx, num_frames - 1).reshape(-1)


def segment_starts(num_frames: int, num_segments: int, length: int = 1,
                   rng: Optional[np.random.Generator] = None, twice: bool = False) -> np.ndarray:
  """TSN segment starts; random inside each segment when ``rng`` is given, centred otherwise."""
  if num_frames < 1:
    raise ValueError(f"a video needs at least one frame, got {num_frames}")
  usable = num_frames - length + 1
  if rng is not None:
    avg = usable // num_segments
    if avg > 0:
      return np.arange(num_segments) * avg + rng.integers(0, avg, size=num_segments)
    if num_frames > num_segments:
      return np.sort(rng.integers(0, max(usable, 1), size=num_segments))
    return np.zeros(num_segments, np.int64)
  # The reference tests '>' and returns all zeros when F == S + L - 1, collapsing the clip to its first
  # frame; the segment centres are well defined there too (tick = 1), so we take them.
  if num_frames >= num_segments + length - 1:
    tick = usable / float(num_segments)
    centre = np.array([int(tick / 2.0 + tick * k) for k in range(num_segments)])
    if twice:
      return np.stack([centre, np.array([int(tick * k) for k in range(num_segments)])])
    return centre
  zeros = np.zeros(num_segments, np.int64)
  return np.stack([zeros, zeros]) if twice else zeros


def dense_indices(num_frames: int, num_segments: int, length: int = 1, start: int = 0) -> np.ndarray:
  """Frame indices of one dense clip starting at ``start`` (wrapping modulo F, as the reference)."""
  if length == 1:
    stride = 64 // num_segments
    idx = [(k * stride + start) % num_frames for k in range(num_segments)]
    return np.asarray(idx, np.int64)
  idx = [(k * length + start) % num_frames for k in range(num_segments)]
  return expand_segments(np.asarray(idx), length, num_frames)


def dense_span(num_segments: int, length: int) -> int:
  return 64 if length == 1 else num_segments * length


def dense_start(num_frames: int, num_segments: int, length: int,
                rng: Optional[np.random.Generator]) -> int:
  sample_pos = max(1, 1 + num_frames - dense_span(num_segments, length))
  if sample_pos == 1:
    return 0
  if rng is None:  # deterministic validation clip: the middle of the video
    return (sample_pos - 1) // 2
  return int(rng.integers(0, sample_pos - 1))


def clip_indices(num_frames: int, num_segments: int, length: int, mode: str,
                 rng: Optional[np.random.Generator] = None) -> np.ndarray:
  """Frame indices of one training (``rng`` given) or validation clip: ``(S * L,)``."""
  if mode == "segment":
    return expand_segments(segment_starts(num_frames, num_segments, length, rng), length, num_frames)
  if mode == "dense":
    return dense_indices(num_frames, num_segments, length, dense_start(num_frames, num_segments, length, rng))
  raise ValueError(f"unknown sampling mode {mode!r}: use 'segment' or 'dense'")


def test_clip_indices(num_frames: int, num_segments: int, length: int, mode: str,
                      num_clips: int) -> np.ndarray:
  """Frame indices of the temporal test views: ``(num_clips, S * L)``.

  segment: 1 clip (segment centres) or 2 (centres and starts, ``--twice_sample``);
  dense: ``num_clips`` starts ``linspace(0, F - span, num_clips)``.
  """
  if mode == "segment":
    if num_clips == 1:
      return clip_indices(num_frames, num_segments, length, "segment")[None]
    if num_clips == 2:
      starts = segment_starts(num_frames, num_segments, length, twice=True)
      return np.stack([expand_segments(s, length, num_frames) for s in starts])
    raise ValueError(f"segment sampling tests 1 or 2 clips, got test_clips={num_clips}")
  if mode == "dense":
    sample_pos = max(1, 1 + num_frames - dense_span(num_segments, length))
    starts = np.linspace(0, sample_pos - 1, num=num_clips, dtype=int)
    return np.stack([dense_indices(num_frames, num_segments, length, int(s)) for s in starts])
  raise ValueError(f"unknown sampling mode {mode!r}: use 'segment' or 'dense'")


def frames_needed(num_segments: int, length: int, mode: str) -> int:
  """The fewest frames a video needs for a clip without repeated frames.

  segment: ``S + L - 1`` (S distinct starts of L consecutive frames; below it the reference clamps the
  starts and pads with the last frame); dense: the span, ``S * L`` or the 64-frame window of ``L == 1``
  (below it the reference wraps around). Shorter videos are still used, and counted as ``short``.
  """
  if mode == "dense":
    return dense_span(num_segments, length)
  return num_segments + length - 1
