"""Something-Something V1 from the official annotation files and JPEG frame folders.

Annotations (``;``-separated, no header): ``something-something-v1-labels.csv`` (one class name per
line), ``something-something-v1-train.csv`` and ``-validation.csv`` (``<id>;<class name>``).
Frames: ``<id>/00001.jpg ...`` (the official ``20bn-something-something-v1`` release), found anywhere up
to 4 folders below ``config.data.root``; other templates (``img_00001.jpg`` ...) are detected.

Class indices: the label file's names in alphabetical order, as the reference (its
``tools/gen_label_sthv1.py`` sorts them before numbering). The 174 names are read from the user's label
file at run time; ``labels/something_v1.txt`` ships the same 174 names in that sorted order (for
``predict.py``). Horizontal flips are off in the Something-Something configs.
"""
from __future__ import annotations

from typing import Optional

from input_pipeline.sources.base import BAD_VIDEOS, BadVideoLog, DatasetLayoutError
from input_pipeline.sources.layout import Entry, EntrySource, find_annotation, resolve

FILES = {"labels": ("something-something-v1-labels.csv",),
         "train": ("something-something-v1-train.csv",),
         "val": ("something-something-v1-validation.csv",),
         "test": ("something-something-v1-test.csv",)}
LAYOUT = ("one JPEG frame folder per video named by its id, '<id>/00001.jpg, 00002.jpg, ...' (the "
          "20bn-something-something-v1 release), up to 4 folders below config.data.root")


def read_labels(path: str) -> tuple[str, ...]:
  with open(path) as fh:
    names = [line.strip() for line in fh if line.strip()]
  if len(set(names)) != len(names):
    raise DatasetLayoutError(f"{path}: duplicate class names")
  return tuple(sorted(names))


def read_split(path: str) -> list[tuple[str, str]]:
  rows = []
  with open(path) as fh:
    for n, line in enumerate(fh, 1):
      if not line.strip():
        continue
      parts = line.rstrip("\n").split(";")
      if len(parts) < 2 or not parts[0].strip():
        raise DatasetLayoutError(f"{path}:{n}: expected '<video id>;<class name>', got {line.strip()!r}")
      rows.append((parts[0].strip(), ";".join(parts[1:]).strip()))
  return rows


def sthv1(root: str, split: str, annotations: str = "", explicit_list: str = "",
          frame_template: Optional[str] = None, short_side: int = 0,
          log: BadVideoLog = BAD_VIDEOS) -> EntrySource:
  labels_path = find_annotation(root, annotations, FILES["labels"], "Something-Something V1 labels")
  split_path = find_annotation(root, annotations, FILES[split], f"Something-Something V1 {split} split",
                               explicit_list)
  names = read_labels(labels_path)
  index = {n: i for i, n in enumerate(names)}
  entries = []
  for vid, label in read_split(split_path):
    if label not in index:
      log.note(vid, f"{vid}: label {label!r} ({split_path}) is not in {labels_path}", "unknown_label")
      continue
    entries.append(Entry(video_id=vid, label=index[label]))
  entries = resolve(entries, root, lambda e: [e.video_id], LAYOUT, split_path, log)
  return EntrySource(entries, names, frame_template or None, short_side, log, name=f"sthv1/{split}")
