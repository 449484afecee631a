"""Finding the videos of an annotation file in a user's dataset directory, whatever its layout.

Users keep the benchmarks in many layouts: ``root/train/<label>/<id>.mp4`` (Kinetics downloaders),
``root/<Class>/<name>.avi`` (UCF101, HMDB51 archives), ``root/<id>/00001.jpg`` (Something-Something V1),
frames extracted next to or instead of the videos, with or without split folders. ``scan_tree`` walks
``root`` once and maps the *stem* of every video file and every frame folder (a directory that directly
holds images) to its path; the dataset parsers then look their entries up by stem, so any nesting works.
Frame folders are not listed beyond their first image, so a scan costs one directory read per
non-frame directory plus one short read per video.

``EntrySource`` is the ClipSource over the resolved entries: a video file is read with
``videos.read_video_clip``, a frame folder with ``rawframes.FrameFolderReader``.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Optional, Sequence

import numpy as np

from input_pipeline.sources.base import BAD_VIDEOS, BadVideoError, BadVideoLog, DatasetLayoutError
from input_pipeline.sources.rawframes import FrameFolderReader
from input_pipeline.sources.videos import VIDEO_EXTS, read_video_clip

IMAGE_EXTS = (".jpg", ".jpeg", ".png")


@functools.lru_cache(maxsize=8)
def scan_tree(root: str, max_depth: int = 4) -> dict:
  """``{stem: path}`` of the video files and frame folders under ``root`` (first one wins), plus under
  the keys ``'\\0lower'`` a ``{stem.lower(): path}`` map for case-insensitive look-ups and ``'\\0empty'``
  the empty folders (reported as unusable frame folders rather than as missing)."""
  found: dict[str, str] = {}
  lower: dict[str, str] = {}
  empty: dict[str, str] = {}  # empty directories (frame folders whose extraction failed)
  stack = [(root, 0)]
  while stack:
    folder, depth = stack.pop()
    try:
      it = os.scandir(folder)
    except OSError:
      continue
    subdirs, seen_any = [], False
    with it:
      for e in it:
        name = e.name
        seen_any = True
        if name.startswith("."):
          continue
        ext = os.path.splitext(name)[1].lower()
        try:
          is_dir = e.is_dir()
        except OSError:
          continue
        if is_dir:
          subdirs.append(e.path)
        elif ext in VIDEO_EXTS:
          stem = name[: -len(ext)]
          found.setdefault(stem, e.path)
          lower.setdefault(stem.lower(), e.path)
        elif ext in IMAGE_EXTS and folder != root:
          # a frame folder: record it, do not read the rest of it
          stem = os.path.basename(folder)
          found.setdefault(stem, folder)
          lower.setdefault(stem.lower(), folder)
          subdirs = None
          break
    if not seen_any and folder != root:
      empty.setdefault(os.path.basename(folder), folder)
    if subdirs and depth < max_depth:
      stack.extend((d, depth + 1) for d in sorted(subdirs, reverse=True))
  found["\0lower"] = lower
  found["\0empty"] = empty
  return found


def lookup(index: dict, keys: Sequence[str]) -> Optional[str]:
  """The first of ``keys`` found in a ``scan_tree`` index (exact, then case-insensitive)."""
  for k in keys:
    if k in index:
      return index[k]
  lower = index.get("\0lower", {})
  for k in keys:
    if k.lower() in lower:
      return lower[k.lower()]
  return None


@dataclasses.dataclass
class Entry:
  video_id: str  # the annotation's name for it (Kinetics clip name, SS id, UCF/HMDB file stem)
  label: int
  path: str = ""  # video file or frame folder ("" = not found)
  num_frames: int = -1  # known frame count of a frame folder (-1: counted on first read)


def resolve(entries: list, root: str, keys_of, layouts: str, annotation: str,
            log: BadVideoLog = BAD_VIDEOS, max_depth: int = 4) -> list:
  """Looks every entry up in ``root``; entries without a file are logged as ``missing`` and left out.

  Raises ``DatasetLayoutError`` (one message saying what was expected) when ``root`` is not a
  directory or holds none of the annotation's videos.
  """
  if not os.path.isdir(root):
    raise DatasetLayoutError(f"dataset directory {root!r} does not exist (set config.data.root). "
                             f"Expected: {layouts}")
  index = scan_tree(os.path.abspath(root), max_depth)
  kept, missing = [], []
  for e in entries:
    keys = keys_of(e)
    path = lookup(index, keys)
    if path is None:
      missing.append((e, keys[0]))
    else:
      e.path = path
      kept.append(e)
  if entries and not kept:
    examples = ", ".join(repr(k) for _, k in missing[:3])
    n_found = len(index) - 2
    raise DatasetLayoutError(
        f"none of the {len(entries)} videos of {annotation} is in {root!r} (looked for video files "
        f"{'/'.join(VIDEO_EXTS[:4])}/... or frame folders named like {examples}; the directory holds "
        f"{n_found} videos/frame folders{' such as ' + repr(sorted(index)[2]) if n_found else ''}). "
        f"Expected: {layouts}")
  empty = index.get("\0empty", {})
  for _, key in missing:
    if key in empty:
      log.note(empty[key], f"{empty[key]}: frame folder is empty (listed in {annotation})", "skipped")
    else:
      log.note(os.path.join(root, key), f"{key}: listed in {annotation} but not found under {root}", "missing")
  return kept


class EntrySource:
  """A ClipSource over resolved ``Entry`` rows (video files and/or frame folders)."""

  def __init__(self, entries: list, class_names: Sequence[str], frame_template: Optional[str] = None,
               short_side: int = 0, log: BadVideoLog = BAD_VIDEOS, name: str = ""):
    self.entries = entries
    self.class_names = tuple(class_names)
    self.short_side, self.log, self.name = short_side, log, name
    self.frames = FrameFolderReader(frame_template, short_side, log)

  def __len__(self):
    return len(self.entries)

  def __repr__(self):
    return f"EntrySource({self.name}: {len(self)} videos, {len(self.class_names)} classes)"

  def label(self, index: int) -> int:
    return self.entries[index].label

  def video_id(self, index: int) -> str:
    return self.entries[index].video_id

  def path(self, index: int) -> str:
    return self.entries[index].path

  fused_frames = True  # load_clip takes a frame_fn (pipeline.train_example)

  def load_clip(self, index: int, index_fn, frame_fn=None) -> np.ndarray:
    e = self.entries[index]
    if os.path.isdir(e.path):
      return self.frames.load(e.path, index_fn, e.num_frames, frame_fn)
    if not os.path.exists(e.path):
      raise BadVideoError(e.path, "file or frame folder has disappeared since the dataset was scanned")
    return read_video_clip(e.path, index_fn, self.short_side, self.log, frame_fn)


def annotation_dirs(root: str, annotations: str) -> list[str]:
  """Where official annotation files are looked for: ``config.data.annotations`` (a folder, or a
  file whose folder is used), else ``root/annotations``, ``root`` and ``root/..``."""
  dirs = []
  for a in [p for p in (annotations or "").split(",") if p]:
    dirs.append(a if os.path.isdir(a) else os.path.dirname(a) or ".")
  if not dirs:
    dirs = [os.path.join(root, "annotations"), root, os.path.join(root, "..")]
  return dirs


def find_annotation(root: str, annotations: str, names: Sequence[str], what: str,
                    explicit: str = "", required: bool = True) -> Optional[str]:
  """The first file called one of ``names`` in the annotation folders (and one level below them).

  ``explicit`` (``config.data.train_list`` / ``val_list``) wins when set. Files named in
  ``annotations`` (comma-separated) are matched by name as well.
  """
  if explicit:
    if not os.path.isfile(explicit):
      raise DatasetLayoutError(f"{what}: {explicit!r} does not exist")
    return explicit
  for a in [p for p in (annotations or "").split(",") if p]:
    if os.path.isfile(a) and os.path.basename(a) in names:
      return a
  searched = annotation_dirs(root, annotations)
  for d in searched:
    for n in names:
      if os.path.isfile(os.path.join(d, n)):
        return os.path.join(d, n)
    if os.path.isdir(d):
      for sub in sorted(os.listdir(d)):
        for n in names:
          p = os.path.join(d, sub, n)
          if os.path.isfile(p):
            return p
  if not required:
    return None
  raise DatasetLayoutError(
      f"{what}: none of {', '.join(names)} found in {', '.join(repr(d) for d in searched)} (or one "
      f"folder below). Set config.data.annotations to the folder of the official annotation files.")
