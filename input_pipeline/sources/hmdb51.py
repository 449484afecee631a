"""HMDB51 from the official ``testTrainMulti_7030_splits`` files (splits 1-3) and local videos or frames.

Annotations: one file per class and split, ``<class>_test_split<k>.txt``, lines ``<video>.avi <id>`` with
id 1 = training, 2 = testing, 0 = not used in split k. The evaluation split ('val') is id 2. Videos
``<video>.avi`` (or frame folders named by the video's stem) anywhere up to 4 folders below
``config.data.root`` (``hmdb51_org/<class>/...`` as the per-class archives unpack, or flat).

Classes: ``labels/hmdb51.txt``, the official 51 names in alphabetical order (the order of the split
files and of the reference's lists).
"""
from __future__ import annotations

import glob
import os
import re
from typing import Optional

from input_pipeline.sources.base import BAD_VIDEOS, BadVideoLog, DatasetLayoutError
from input_pipeline.sources.kinetics import LABELS_DIR, read_class_list
from input_pipeline.sources.layout import Entry, EntrySource, annotation_dirs, resolve

LAYOUT = ("HMDB51 videos '<name>.avi' (or frame folders named '<name>'), e.g. "
          "'hmdb51_org/brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi', up to 4 folders below "
          "config.data.root")
_SPLIT_FILE = re.compile(r"^(?P<cls>.+)_test_split(?P<k>[123])\.txt$")


def find_split_files(root: str, annotations: str, split_id: int) -> list[str]:
  searched = annotation_dirs(root, annotations)
  for d in searched:
    for pattern in (os.path.join(d, f"*_test_split{split_id}.txt"), os.path.join(d, "*", f"*_test_split{split_id}.txt")):
      files = sorted(glob.glob(pattern))
      if files:
        return files
  raise DatasetLayoutError(
      f"HMDB51 split {split_id}: no '<class>_test_split{split_id}.txt' files (testTrainMulti_7030_splits) in "
      f"{', '.join(repr(d) for d in searched)} or one folder below. Set config.data.annotations to that folder.")


def hmdb51(root: str, split: str, annotations: str = "", explicit_list: str = "", split_id: int = 1,
           frame_template: Optional[str] = None, short_side: int = 0,
           log: BadVideoLog = BAD_VIDEOS) -> EntrySource:
  if split_id not in (1, 2, 3):
    raise ValueError(f"HMDB51 has official splits 1, 2 and 3; got config.data.split_id={split_id}")
  del explicit_list  # the split is spread over 51 files
  names = read_class_list(os.path.join(LABELS_DIR, "hmdb51.txt"))
  index = {n: i for i, n in enumerate(names)}
  want = "1" if split == "train" else "2"
  entries = []
  files = find_split_files(root, annotations, split_id)
  for path in files:
    m = _SPLIT_FILE.match(os.path.basename(path))
    cls = m.group("cls")
    with open(path) as fh:
      rows = [line.split() for line in fh if line.strip()]
    for parts in rows:
      if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
        raise DatasetLayoutError(f"{path}: expected lines '<video>.avi <0|1|2>', got {' '.join(parts)!r}")
      if parts[1] != want:
        continue
      stem = os.path.splitext(parts[0])[0]
      if cls not in index:
        log.note(parts[0], f"{parts[0]}: class {cls!r} of {os.path.basename(path)} is not one of the 51 "
                 "HMDB51 classes", "unknown_label")
        continue
      entries.append(Entry(video_id=stem, label=index[cls]))
  where = os.path.dirname(files[0])
  entries = resolve(entries, root, lambda e: [e.video_id], LAYOUT, f"{where}/*_test_split{split_id}.txt", log)
  return EntrySource(entries, names, frame_template, short_side, log, name=f"hmdb51/split{split_id}/{split}")
