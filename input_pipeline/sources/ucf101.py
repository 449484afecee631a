"""UCF101 from the official ``ucfTrainTestlist`` files (splits 1-3) and local videos or frames.

Annotations: ``classInd.txt`` (``1 ApplyEyeMakeup``), ``trainlist0{1,2,3}.txt``
(``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1``, 1-based class) and ``testlist0{1,2,3}.txt``
(``ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi``, the class is the folder). The evaluation split
('val') is ``testlist0k``. Videos ``v_<Class>_gXX_cYY.avi`` or frame folders of that name anywhere up to
4 folders below ``config.data.root`` (``UCF-101/<Class>/...`` as the archive unpacks, or flat). Names are
matched case-insensitively (the lists write ``HandstandPushups/v_HandStandPushups_...``).

Classes: ``classInd.txt`` when found, else ``labels/ucf101.txt`` (the official 101 names in
``classInd`` order; the reference's labels are ``classInd - 1``).
"""
from __future__ import annotations

import logging
import os
from typing import Optional

from input_pipeline.sources.base import BAD_VIDEOS, BadVideoLog, DatasetLayoutError
from input_pipeline.sources.kinetics import LABELS_DIR, read_class_list
from input_pipeline.sources.layout import Entry, EntrySource, find_annotation, resolve

_log = logging.getLogger("input_pipeline")
_WARNED: set = set()
LAYOUT = ("UCF101 videos 'v_<Class>_gXX_cYY.avi' (or frame folders of that name), e.g. "
          "'UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi', up to 4 folders below config.data.root")


def read_class_ind(path: str) -> tuple[str, ...]:
  pairs = []
  with open(path) as fh:
    for n, line in enumerate(fh, 1):
      if not line.strip():
        continue
      parts = line.split()
      if len(parts) != 2 or not parts[0].isdigit():
        raise DatasetLayoutError(f"{path}:{n}: expected '<1-based index> <ClassName>', got {line.strip()!r}")
      pairs.append((int(parts[0]), parts[1]))
  pairs.sort()
  if [p[0] for p in pairs] != list(range(1, len(pairs) + 1)):
    raise DatasetLayoutError(f"{path}: class indices must be 1..{len(pairs)}")
  return tuple(p[1] for p in pairs)


def ucf101(root: str, split: str, annotations: str = "", explicit_list: str = "", split_id: int = 1,
           frame_template: Optional[str] = None, short_side: int = 0,
           log: BadVideoLog = BAD_VIDEOS) -> EntrySource:
  if split_id not in (1, 2, 3):
    raise ValueError(f"UCF101 has official splits 1, 2 and 3; got config.data.split_id={split_id}")
  list_name = f"{'trainlist' if split == 'train' else 'testlist'}{split_id:02d}.txt"
  list_path = find_annotation(root, annotations, (list_name,), f"UCF101 split {split_id} {split} list",
                              explicit_list)
  ind = find_annotation(root, annotations, ("classInd.txt",), "UCF101 classInd.txt", required=False)
  official = read_class_list(os.path.join(LABELS_DIR, "ucf101.txt"))
  names = read_class_ind(ind) if ind else official
  if ind and names != official and ind not in _WARNED:
    _WARNED.add(ind)
    _log.warning("%s differs from the official 101 UCF101 classes; using it as given", ind)
  lower = {n.lower(): i for i, n in enumerate(names)}
  entries = []
  with open(list_path) as fh:
    for line in fh:
      parts = line.split()
      if not parts:
        continue
      rel = parts[0].replace("\\", "/")
      stem = os.path.splitext(os.path.basename(rel))[0]
      folder = rel.split("/")[0] if "/" in rel else (stem.split("_")[1] if stem.count("_") >= 3 else "")
      if len(parts) > 1:
        label = int(parts[1]) - 1 if parts[1].lstrip("-").isdigit() else -1
        where = f"class {parts[1]}"
      else:
        label = lower.get(folder.lower(), -1)
        where = f"class folder {folder!r}"
      if not 0 <= label < len(names):
        log.note(rel, f"{rel}: {where} ({list_path}) is not one of the {len(names)} classes", "unknown_label")
        continue
      entries.append(Entry(video_id=stem, label=label))
  entries = resolve(entries, root, lambda e: [e.video_id], LAYOUT, list_path, log)
  return EntrySource(entries, names, frame_template, short_side, log, name=f"ucf101/split{split_id}/{split}")
