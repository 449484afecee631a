"""Kinetics-400 and Mini-Kinetics-200 from the official annotation CSVs and local video files.

Annotations: the official CSVs ``label,youtube_id,time_start,time_end,split`` (``is_cc`` may follow),
named ``train.csv`` / ``validate.csv`` (the current release) or ``kinetics_train.csv`` /
``kinetics_val.csv`` (the 2017 one); one CSV holding several splits is filtered by its ``split`` column.
Videos: ``<youtube_id>_<time_start:06d>_<time_end:06d>.mp4`` (any video extension) or a frame folder of
that name, anywhere below ``config.data.root`` (``train/<label>/``, ``val/``, flat ...; see layout.py).
Names ``<youtube_id>_<time_start>`` (the TSM frame folders) and ``<youtube_id>`` are accepted too.

Classes: the 400 names of ``labels/kinetics400.txt`` in alphabetical order, the indices of the
reference (its ``tools/kinetics_label_map.txt`` is the same sorted list). CSV labels are matched after
normalising case, ``_`` and quotes, so the underscore-style names of some copies work.

Mini-Kinetics-200 (Xie et al. 2018, used by the reference as ``kineticsmini``): the official lists
``train_ytid_list.txt`` / ``val_ytid_list.txt`` (one YouTube id per line) select clips of the Kinetics
CSVs; its 200 classes are the labels of the selected training clips, in alphabetical order, generated
from the user's files at run time (no class list is shipped).
"""
from __future__ import annotations

import csv
import logging
import os
from typing import Optional

from input_pipeline.sources.base import BAD_VIDEOS, BadVideoLog, DatasetLayoutError
from input_pipeline.sources.layout import Entry, EntrySource, find_annotation, resolve

_log = logging.getLogger("input_pipeline")
LABELS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "labels")

CSV_NAMES = {
    "train": ("train.csv", "kinetics_train.csv", "kinetics-400_train.csv", "kinetics400_train.csv",
              "kinetics_400_train.csv", "k400_train.csv"),
    "val": ("validate.csv", "val.csv", "validation.csv", "kinetics_val.csv", "kinetics-400_val.csv",
            "kinetics400_val.csv", "kinetics_400_val.csv", "k400_val.csv"),
    "test": ("test.csv", "kinetics_test.csv", "kinetics-400_test.csv", "kinetics400_test.csv"),
}
SPLIT_VALUES = {"train": ("train", "training"), "val": ("val", "validate", "validation"), "test": ("test",)}
MINI_LISTS = {"train": ("train_ytid_list.txt", "mini_train_ytid_list.txt", "minikinetics_train.txt"),
              "val": ("val_ytid_list.txt", "mini_val_ytid_list.txt", "minikinetics_val.txt")}
LAYOUT = ("video files or frame folders named <youtube_id>_<time_start:06d>_<time_end:06d> (e.g. "
          "'train/abseiling/-3B32lodo2M_000059_000069.mp4' or 'val/-3B32lodo2M_000059_000069/img_00001.jpg') "
          "up to 4 folders below config.data.root; split and class folders are optional")


def read_class_list(path: str) -> tuple[str, ...]:
  with open(path) as fh:
    names = tuple(line.strip() for line in fh if line.strip())
  if len(set(names)) != len(names):
    raise ValueError(f"{path}: duplicate class names")
  return names


def normalise_label(name: str) -> str:
  return " ".join(name.strip().strip('"').strip("'").replace("_", " ").lower().split())


def clip_name(youtube_id: str, start, end) -> str:
  return f"{youtube_id}_{int(float(start)):06d}_{int(float(end)):06d}"


def read_kinetics_csv(path: str, split: Optional[str] = None) -> list[dict]:
  """Rows of an official Kinetics CSV (only those of ``split`` when it has a ``split`` column with
  several values)."""
  with open(path, newline="") as fh:
    reader = csv.DictReader(fh)
    header = [h.strip() for h in (reader.fieldnames or [])]
    if not {"youtube_id", "time_start", "time_end"} <= set(header):
      raise DatasetLayoutError(f"{path}: expected the official Kinetics CSV header "
                               f"'label,youtube_id,time_start,time_end,split', got {','.join(header)!r}")
    rows = [{k.strip(): (v or "").strip() for k, v in r.items() if k} for r in reader]
  if split and rows and "split" in rows[0]:
    values = {r["split"] for r in rows}
    if len(values) > 1:
      rows = [r for r in rows if r["split"] in SPLIT_VALUES[split]]
  return rows


def _entries(rows, class_index, where: str, log: BadVideoLog) -> list[Entry]:
  entries = []
  for r in rows:
    name = clip_name(r["youtube_id"], r["time_start"], r["time_end"])
    label = r.get("label", "")
    c = class_index.get(normalise_label(label))
    if c is None:
      log.note(name, f"{name}: label {label!r} ({where}) is not one of the classes of the label map",
               "unknown_label")
      continue
    entries.append(Entry(video_id=name, label=c))
  return entries


def _keys(e: Entry) -> list[str]:
  name = e.video_id
  ytid, start = name[:-14], name[-13:-7]
  return [name, f"{ytid}_{int(start)}", ytid]


def kinetics400(root: str, split: str, annotations: str = "", explicit_list: str = "",
                frame_template: Optional[str] = None, short_side: int = 0,
                log: BadVideoLog = BAD_VIDEOS) -> EntrySource:
  path = find_annotation(root, annotations, CSV_NAMES[split], f"Kinetics-400 {split} annotations",
                         explicit_list)
  names = read_class_list(os.path.join(LABELS_DIR, "kinetics400.txt"))
  index = {normalise_label(n): i for i, n in enumerate(names)}
  rows = read_kinetics_csv(path, split)
  entries = resolve(_entries(rows, index, path, log), root, _keys, LAYOUT, path, log)
  return EntrySource(entries, names, frame_template, short_side, log, name=f"kinetics400/{split}")


def read_id_list(path: str) -> list[str]:
  with open(path) as fh:
    return [line.split()[0].split(",")[0] for line in fh if line.strip()]


def minikinetics(root: str, split: str, annotations: str = "", explicit_list: str = "",
                 frame_template: Optional[str] = None, short_side: int = 0,
                 log: BadVideoLog = BAD_VIDEOS) -> EntrySource:
  """Mini-Kinetics-200: the Kinetics CSV rows whose YouTube id (or clip name) is in the id list."""
  lists, csvs = {}, {}
  for s in ("train", "val"):
    lists[s] = find_annotation(root, annotations, MINI_LISTS[s], f"Mini-Kinetics {s} id list",
                               explicit_list if s == split else "", required=(s == split or s == "train"))
    csvs[s] = find_annotation(root, annotations, CSV_NAMES[s], f"Kinetics-400 {s} annotations (for Mini-Kinetics)")
  selected = {}
  for s in ("train", split):
    if s in selected:
      continue
    wanted = set(read_id_list(lists[s]))
    rows = read_kinetics_csv(csvs[s], s)
    by_id = {}
    for r in rows:
      by_id.setdefault(r["youtube_id"], []).append(r)
      by_id.setdefault(clip_name(r["youtube_id"], r["time_start"], r["time_end"]), []).append(r)
    picked = []
    for w in sorted(wanted):
      if w in by_id:
        picked.extend(by_id[w])
      else:
        log.note(w, f"{w}: in {lists[s]} but not in {csvs[s]}", "missing")
    seen, rows_s = set(), []
    for r in picked:
      key = clip_name(r["youtube_id"], r["time_start"], r["time_end"])
      if key not in seen:
        seen.add(key)
        rows_s.append(r)
    selected[s] = rows_s
  names = tuple(sorted({r["label"] for r in selected["train"] if r.get("label")}, key=normalise_label))
  if len(names) != 200:
    _log.warning("Mini-Kinetics: the training list %s selects %d classes, not 200", lists["train"], len(names))
  index = {normalise_label(n): i for i, n in enumerate(names)}
  entries = resolve(_entries(selected[split], index, lists[split], log), root, _keys, LAYOUT, lists[split], log)
  return EntrySource(entries, names, frame_template, short_side, log, name=f"minikinetics/{split}")
