"""Named benchmarks: ``build_source(config, split)`` for Kinetics-400, Mini-Kinetics-200,
Something-Something V1, UCF101, HMDB51, and prepared TFDS datasets.

``pipeline.build_source`` handles 'synthetic', 'rawframes' and 'videos' and calls this module for
every other ``config.data.dataset``:

============  ===========================================================  ==========================
dataset       annotations (official formats, found under data.annotations)  parser
============  ===========================================================  ==========================
kinetics400   train.csv / validate.csv (or kinetics_{train,val}.csv)        sources/kinetics.py
minikinetics  the Kinetics CSVs + train_ytid_list.txt / val_ytid_list.txt   sources/kinetics.py
sthv1         something-something-v1-{labels,train,validation}.csv          sources/something.py
ucf101        classInd.txt, trainlist0k.txt / testlist0k.txt (k=split_id)   sources/ucf101.py
hmdb51        <class>_test_split<k>.txt (testTrainMulti_7030_splits)        sources/hmdb51.py
tfds          a directory written by prepare.py (data.root)                 sources/prepared.py
============  ===========================================================  ==========================

Any of them reads ``data.prepared`` instead of the raw files when it is set (the output of
``python -m input_pipeline.prepare DATASET ... --out=DIR``). Splits are 'train' and 'val' ('val' is
the evaluation split: Kinetics validate, SS V1 validation, UCF101/HMDB51 test split k).
"""
from __future__ import annotations

import json
import logging
import os

from input_pipeline.sources.base import BAD_VIDEOS, DatasetLayoutError

_log = logging.getLogger("input_pipeline")
DATASETS = ("kinetics400", "minikinetics", "sthv1", "ucf101", "hmdb51")
SPLITS = ("train", "val")


def raw_source(dataset: str, root: str, split: str, annotations: str = "", explicit_list: str = "",
               split_id: int = 1, frame_template: str = "", short_side: int = 0, log=BAD_VIDEOS):
  """The raw-layout source of a named benchmark (no config needed; used by prepare.py)."""
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  if dataset in DATASETS and not os.path.isdir(root):
    import importlib
    module = {"kinetics400": "kinetics", "minikinetics": "kinetics", "sthv1": "something"}.get(dataset, dataset)
    layout = importlib.import_module(f"input_pipeline.sources.{module}").LAYOUT
    raise DatasetLayoutError(f"dataset directory {root!r} does not exist (set config.data.root, or --source of "
                             f"prepare). Expected: {layout}")
  kw = dict(annotations=annotations, explicit_list=explicit_list, frame_template=frame_template or None,
            short_side=short_side, log=log)
  if dataset == "kinetics400":
    from input_pipeline.sources.kinetics import kinetics400
    return kinetics400(root, split, **kw)
  if dataset == "minikinetics":
    from input_pipeline.sources.kinetics import minikinetics
    return minikinetics(root, split, **kw)
  if dataset == "sthv1":
    from input_pipeline.sources.something import sthv1
    return sthv1(root, split, **kw)
  if dataset == "ucf101":
    from input_pipeline.sources.ucf101 import ucf101
    return ucf101(root, split, split_id=split_id, **kw)
  if dataset == "hmdb51":
    from input_pipeline.sources.hmdb51 import hmdb51
    return hmdb51(root, split, split_id=split_id, **kw)
  raise ValueError(f"unknown dataset {dataset!r}: one of synthetic, rawframes, videos, tfds, "
                   f"{', '.join(DATASETS)}")


def prepared_source(directory: str, split: str, dataset: str = "", split_id: int = 0, short_side: int = 0):
  """A prepared TFDS dataset; checks that it was made from ``dataset`` (and UCF/HMDB ``split_id``)."""
  from input_pipeline.sources.prepared import PreparedSource
  src = PreparedSource(directory, split, short_side=short_side)
  plan = os.path.join(directory, "prepare_plan.json")
  if os.path.isfile(plan):
    with open(plan) as fh:
      p = json.load(fh)
    if dataset and dataset != "tfds" and p.get("dataset") and p["dataset"] != dataset:
      raise DatasetLayoutError(f"{directory!r} was prepared from {p['dataset']!r}, but config.data.dataset "
                               f"is {dataset!r}")
    if split_id and p.get("dataset") in ("ucf101", "hmdb51") and int(p.get("split_id", 1)) != int(split_id):
      raise DatasetLayoutError(f"{directory!r} holds {p['dataset']} split {p.get('split_id')}, but "
                               f"config.data.split_id is {split_id}: prepare that split into another folder")
  return src


def build_source(config, split: str):
  d = config.data
  short = int(d.get("short_side", 0) or 0)
  if d.get("prepared", ""):
    src = prepared_source(d.prepared, split, d.dataset, int(d.get("split_id", 1)), short)
  elif d.dataset == "tfds":
    src = prepared_source(d.root, split, short_side=short)
  else:
    src = raw_source(d.dataset, d.root, split, annotations=d.get("annotations", ""),
                     explicit_list=d.train_list if split == "train" else d.val_list,
                     split_id=int(d.get("split_id", 1)), frame_template=d.get("frame_template", ""),
                     short_side=short)
  if d.dataset == "sthv1" and d.get("flip", False):
    _log.warning("config.data.flip=True on Something-Something: flipping turns 'left to right' classes into "
                 "'right to left' ones; the reference never flips this dataset")
  num_classes = config.get("model", {}).get("num_classes", None)
  if num_classes is not None and len(src.class_names) != num_classes:
    raise ValueError(f"config.model.num_classes={num_classes}, but the {d.dataset} label map has "
                     f"{len(src.class_names)} classes: set --config.model.num_classes={len(src.class_names)}")
  return src
