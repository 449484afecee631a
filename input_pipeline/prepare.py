"""Prepare a benchmark once: ``python -m input_pipeline.prepare DATASET --source=DIR --annotations=... --out=DIR``.

Writes a TFDS dataset in ArrayRecord files (no TensorFlow needed to write or read it) with one record per
video::

    video_id    Text          the annotation's name for the video
    label       ClassLabel    the dataset's classes (names kept in the metadata)
    num_frames  int32
    frames      Sequence(Image(jpeg))   every frame, JPEG, short side --short_side (256; 331 for the
                                         reference's Kinetics frames; 0 keeps the stored size)

Read it back with ``tfds.builder_from_directory(OUT).as_data_source('train')`` or, for training, with
``--config.data.prepared=OUT`` (sources/prepared.py decodes only the sampled frames). Splits are
'train' and 'val' (the evaluation split; UCF101/HMDB51: test split ``--split_id``).

* Parallel: ``--workers`` processes (default: all cores), each writing whole shards of
  ``--videos_per_shard`` videos.
* Resumable: a shard is written to a temporary file and renamed when complete, with a small
  ``.done.json`` marker; running the same command again skips finished shards. The settings are kept in
  ``prepare_plan.json``; resuming with different settings is refused with a clear message.
* Progress: one bar over all videos (tqdm).
* Bad input: unusable videos are left out and listed in ``bad_videos.txt`` with the reason; truncated
  ones are kept with the frames that decode. JPEG frame folders already at the wanted size are copied
  byte for byte (no re-encoding).

DATASET is one of kinetics400, minikinetics, sthv1, ucf101, hmdb51 (official annotations, see
datasets.py), or rawframes / videos (generic TSN lists ``--train_list`` / ``--val_list``, with
``--class_names`` a file of one name per line or, without it, classes 0..max label).
"""
from __future__ import annotations

import argparse
import glob
import io
import json
import logging
import math
import multiprocessing as mp
import os
import sys
import time
from typing import Optional

import numpy as np

from input_pipeline.sources.base import BAD_VIDEOS, BadVideoError

_log = logging.getLogger("input_pipeline.prepare")
PLAN = "prepare_plan.json"
SETTINGS = ("dataset", "split_id", "short_side", "quality", "videos_per_shard")


# ----------------------------------------------------------------------------------------------- sources
def build_sources(args) -> dict:
  """``{split: source}`` with frames read at ``--short_side``."""
  from input_pipeline import datasets
  sources = {}
  for split in args.splits:
    if args.dataset in datasets.DATASETS:
      sources[split] = datasets.raw_source(
          args.dataset, args.source, split, annotations=args.annotations,
          explicit_list=args.train_list if split == "train" else args.val_list, split_id=args.split_id,
          frame_template=args.frame_template, short_side=args.short_side)
    elif args.dataset in ("rawframes", "videos"):
      lst = args.train_list if split == "train" else args.val_list
      if not lst:
        raise SystemExit(f"{args.dataset}: --{split}_list is required for split {split!r}")
      names = None
      if args.class_names:
        with open(args.class_names) as fh:
          names = tuple(line.strip() for line in fh if line.strip())
      if args.dataset == "rawframes":
        from input_pipeline.sources.rawframes import RawFrames
        src = RawFrames(args.source, lst, template=args.frame_template or None, class_names=names,
                        short_side=args.short_side)
      else:
        from input_pipeline.sources.videos import VideoFiles
        src = VideoFiles(args.source, lst, class_names=names, short_side=args.short_side)
      sources[split] = src
    else:
      raise SystemExit(f"unknown dataset {args.dataset!r}: one of {', '.join(datasets.DATASETS)}, rawframes, videos")
  if args.dataset in ("rawframes", "videos") and not args.class_names:
    k = 1 + max(max(s.label(i) for i in range(len(s))) for s in sources.values())
    for s in sources.values():
      s.class_names = tuple(str(i) for i in range(k))
  if args.limit:
    for s in sources.values():
      _limit(s, args.limit)
  return sources


def _limit(source, n: int) -> None:
  if hasattr(source, "entries"):
    source.entries = source.entries[:n]
  elif hasattr(source, "records"):
    source.records = source.records[:n]


def features(class_names):
  import tensorflow_datasets as tfds
  return tfds.features.FeaturesDict({
      "video_id": tfds.features.Text(),
      "label": tfds.features.ClassLabel(names=list(class_names)),
      "num_frames": np.int32,
      "frames": tfds.features.Sequence(tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg")),
  })


def file_template(out: str, dataset: str, split: str):
  import tensorflow_datasets as tfds
  return tfds.core.ShardedFileTemplate(data_dir=out, dataset_name=dataset, split=split,
                                       filetype_suffix="array_record",
                                       template=tfds.core.naming.DEFAULT_FILENAME_TEMPLATE)


def shard_path(out: str, dataset: str, split: str, shard: int, num_shards: int) -> str:
  return os.fspath(file_template(out, dataset, split).sharded_filepath(shard_index=shard, num_shards=num_shards))


# ---------------------------------------------------------------------------------------------- encoding
def encode_jpeg(frame: np.ndarray, quality: int) -> bytes:
  from PIL import Image
  buf = io.BytesIO()
  Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
  return buf.getvalue()


def _frame_folder(source, i: int):
  """``(folder, reader, listed count)`` when video ``i`` is a frame folder, else None."""
  from input_pipeline.sources.layout import EntrySource
  from input_pipeline.sources.rawframes import RawFrames
  if isinstance(source, EntrySource):
    e = source.entries[i]
    return (e.path, source.frames, e.num_frames) if os.path.isdir(e.path) else None
  if isinstance(source, RawFrames):
    path, listed, _ = source.records[i]
    return os.path.join(source.root, path), source.reader, listed
  return None


def _copy_jpegs(folder: str, reader, listed: int, short_side: int, log) -> Optional[list]:
  """The JPEG files of a frame folder as they are, when already at ``short_side`` (else None)."""
  from PIL import Image
  from input_pipeline.sources.rawframes import count_frames
  template = reader.template_of(folder)
  if not template.lower().endswith((".jpg", ".jpeg")):
    return None
  real = count_frames(folder, template)
  if real < 1:
    raise BadVideoError(folder, "frame folder is empty", "extract its frames or remove it from the list")
  with Image.open(os.path.join(folder, template.format(1))) as im:
    if short_side and min(im.size) != short_side:
      return None
    if im.mode != "RGB":
      return None
  n = listed if listed > 0 else real
  if real < n:
    log.note(folder, f"{folder}: the list says {n} frames, the folder has {real}: frames past {real} "
             "repeat the last one", "padded")
  out = []
  for k in range(min(n, real)):
    with open(os.path.join(folder, template.format(k + 1)), "rb") as fh:
      out.append(fh.read())
  return out + [out[-1]] * (n - len(out))


def video_frames(source, i: int, short_side: int, quality: int, log) -> list:
  """Every frame of video ``i`` as JPEG bytes."""
  ff = _frame_folder(source, i)
  if ff is not None:
    folder, reader, listed = ff
    if not os.path.isdir(folder):
      raise BadVideoError(folder, "frame folder is missing", "extract its frames or remove it from the list")
    copied = _copy_jpegs(folder, reader, listed, short_side, log)
    if copied is not None:
      return copied
  frames = source.load_clip(i, lambda n: np.arange(n))
  return [encode_jpeg(f, quality) for f in frames]


# ------------------------------------------------------------------------------------------------ shards
_WORKER: dict = {}


def _init_worker(sources, counter, settings):
  logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
  _WORKER.update(sources=sources, counter=counter, settings=settings)


def _log_of(source):
  return getattr(source, "log", None) or getattr(getattr(source, "reader", None), "log", None) or BAD_VIDEOS


def write_shard(task) -> dict:
  """Writes shard ``shard`` of ``split``; returns what the ``.done.json`` marker records."""
  from array_record.python import array_record_module
  split, shard, num_shards = task
  st = _WORKER["settings"]
  source = _WORKER["sources"][split]
  feats = features(source.class_names)
  log = _log_of(source)
  before = set(log.seen)
  vps = st["videos_per_shard"]
  final = shard_path(st["out"], st["dataset"], split, shard, num_shards)
  tmp = f"{final}.tmp-{os.getpid()}"
  # one record per group for random access; no zstd: JPEG bytes do not compress, and decompressing a
  # 1-10 MB record costs more than decoding the frames a clip needs
  writer = array_record_module.ArrayRecordWriter(tmp, "group_size:1,uncompressed")
  index = {"video_id": [], "label": [], "num_frames": []}
  bad, num_bytes = [], 0
  try:
    for i in range(shard * vps, min(len(source), (shard + 1) * vps)):
      try:
        frames = video_frames(source, i, st["short_side"], st["quality"], log)
        vid, label = source.video_id(i), int(source.label(i))
        rec = feats.serialize_example({"video_id": vid, "label": label, "num_frames": len(frames),
                                       "frames": frames})
        writer.write(rec)
        num_bytes += len(rec)
        index["video_id"].append(vid)
        index["label"].append(label)
        index["num_frames"].append(len(frames))
      except BadVideoError as e:
        bad.append(["skipped", str(e)])
        log.report(e)
      finally:
        with _WORKER["counter"].get_lock():
          _WORKER["counter"].value += 1
  finally:
    writer.close()
  os.replace(tmp, final)
  bad += [[log.kinds[p], log.seen[p]] for p in log.seen if p not in before and log.kinds[p] != "skipped"]
  done = {"split": split, "shard": shard, "num_examples": len(index["label"]), "num_bytes": num_bytes,
          "index": index, "bad": bad}
  _write_json(final + ".done.json", done)
  return done


def _write_json(path: str, obj) -> None:
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as fh:
    json.dump(obj, fh)
  os.replace(tmp, path)


def _read_done(path: str) -> Optional[dict]:
  try:
    with open(path) as fh:
      return json.load(fh)
  except (OSError, ValueError):
    return None


# -------------------------------------------------------------------------------------------------- main
def prepare(args) -> dict:
  """Builds (or finishes) the dataset in ``args.out``; returns a summary."""
  import tensorflow_datasets as tfds
  t0 = time.time()
  os.makedirs(args.out, exist_ok=True)
  before = set(BAD_VIDEOS.seen)
  sources = build_sources(args)
  listed_bad = [["-", BAD_VIDEOS.kinds[p], BAD_VIDEOS.seen[p]] for p in BAD_VIDEOS.seen if p not in before]
  names = tuple(next(iter(sources.values())).class_names)
  for s, src in sources.items():
    if tuple(src.class_names) != names:
      raise SystemExit(f"the splits disagree on the class list ({s})")
  plan = {k: getattr(args, k) for k in SETTINGS}
  plan["split_id"] = args.split_id if args.dataset in ("ucf101", "hmdb51") else 0
  plan["splits"] = {s: {"num_videos": len(src), "num_shards": max(1, math.ceil(len(src) / args.videos_per_shard))}
                    for s, src in sources.items()}
  plan["class_names"] = list(names)
  plan_path = os.path.join(args.out, PLAN)
  if os.path.isfile(plan_path):
    with open(plan_path) as fh:
      old = json.load(fh)
    diff = [k for k in SETTINGS + ("class_names",) if old.get(k) != plan.get(k)]
    diff += [f"splits.{s}" for s in plan["splits"] if s in old.get("splits", {}) and old["splits"][s] != plan["splits"][s]]
    if diff:
      raise SystemExit(f"{args.out} holds a preparation with other settings ({', '.join(diff)}: "
                       f"{ {k: old.get(k.split('.')[0]) for k in diff} }); use another --out or delete it")
    for s, v in old.get("splits", {}).items():
      plan["splits"].setdefault(s, v)
  _write_json(plan_path, plan)
  for stale in glob.glob(os.path.join(args.out, "*.tmp-*")):
    os.remove(stale)

  tasks, done = [], {}
  for split in sources:
    n_shards = plan["splits"][split]["num_shards"]
    for shard in range(n_shards):
      final = shard_path(args.out, args.dataset, split, shard, n_shards)
      d = _read_done(final + ".done.json") if os.path.isfile(final) else None
      if d is not None:
        done[(split, shard)] = d
      else:
        tasks.append((split, shard, n_shards))
  todo = sum(min(len(sources[s]), (k + 1) * args.videos_per_shard) - k * args.videos_per_shard for s, k, _ in tasks)
  total = sum(len(s) for s in sources.values())
  settings = {"out": args.out, "dataset": args.dataset, "short_side": args.short_side, "quality": args.quality,
              "videos_per_shard": args.videos_per_shard}
  if done:
    print(f"resuming: {len(done)} shards done, {len(tasks)} to write ({todo} of {total} videos)", file=sys.stderr)
  from tqdm import tqdm
  bar = tqdm(total=todo, unit="video", desc=f"{args.dataset} -> {args.out}", disable=args.quiet)
  ctx = mp.get_context("spawn")
  counter = ctx.Value("l", 0)
  if args.workers <= 1 or len(tasks) <= 1:
    _init_worker(sources, counter, settings)
    for t in tasks:
      d = write_shard(t)
      done[(d["split"], d["shard"])] = d
      bar.update(counter.value - bar.n)
  else:
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    with ProcessPoolExecutor(min(args.workers, len(tasks)), mp_context=ctx, initializer=_init_worker,
                             initargs=(sources, counter, settings)) as pool:
      pending = {pool.submit(write_shard, t) for t in tasks}
      while pending:
        finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
        for f in finished:
          d = f.result()
          done[(d["split"], d["shard"])] = d
        bar.update(counter.value - bar.n)
  bar.close()

  # metadata: TFDS features + splits, the index sidecars, the bad-video list
  feats = features(names)
  split_infos, bad, written = [], list(listed_bad), {}
  for split in sources:
    n_shards = plan["splits"][split]["num_shards"]
    parts = [done[(split, k)] for k in range(n_shards)]
    split_infos.append(tfds.core.SplitInfo(
        name=split, shard_lengths=[p["num_examples"] for p in parts], num_bytes=sum(p["num_bytes"] for p in parts),
        filename_template=file_template(args.out, args.dataset, split)))
    index = {k: [v for p in parts for v in p["index"][k]] for k in ("video_id", "label", "num_frames")}
    from input_pipeline.sources.prepared import index_path
    _write_json(index_path(args.out, split), index)
    bad += [[split] + b for p in parts for b in p["bad"]]
    written[split] = len(index["label"])
  desc = (f"vidjax input_pipeline.prepare: {args.dataset} from {os.path.abspath(args.source)}, frames JPEG "
          f"q{args.quality} at short side {args.short_side or 'as stored'}"
          + (f", split {args.split_id}" if plan["split_id"] else ""))
  tfds.folder_dataset.write_metadata(data_dir=args.out, features=feats, split_infos=split_infos,
                                     filename_template=file_template(args.out, args.dataset, None),
                                     description=desc, check_data=False)
  with open(os.path.join(args.out, "bad_videos.txt"), "w") as fh:
    fh.write("".join(f"{s}\t{kind}\t{msg}\n" for s, kind, msg in bad))
  summary = {"out": args.out, "written": written, "bad": len(bad),
             "bad_by_kind": {k: sum(1 for b in bad if b[1] == k) for k in sorted({b[1] for b in bad})},
             "seconds": round(time.time() - t0, 1)}
  print(json.dumps(summary), file=sys.stderr if args.quiet else sys.stdout)
  return summary


def parse_args(argv=None):
  p = argparse.ArgumentParser(prog="python -m input_pipeline.prepare", description=__doc__.split("\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("dataset", help="kinetics400 | minikinetics | sthv1 | ucf101 | hmdb51 | rawframes | videos")
  p.add_argument("--source", required=True, help="dataset directory (videos or frame folders, any nesting)")
  p.add_argument("--annotations", default="", help="folder (or comma-separated files) of the official annotations")
  p.add_argument("--out", required=True, help="output directory (the TFDS dataset; reuse it to resume)")
  p.add_argument("--splits", default="train,val", help="comma-separated: train,val")
  p.add_argument("--split_id", type=int, default=1, help="UCF101/HMDB51 official split 1-3")
  p.add_argument("--short_side", type=int, default=256, help="frames stored at this short side (0: as stored)")
  p.add_argument("--quality", type=int, default=90, help="JPEG quality of re-encoded frames")
  p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (1: in this process)")
  p.add_argument("--videos_per_shard", type=int, default=64)
  p.add_argument("--train_list", default="", help="rawframes/videos list, or an explicit annotation file")
  p.add_argument("--val_list", default="")
  p.add_argument("--class_names", default="", help="rawframes/videos: file of class names, one per line")
  p.add_argument("--frame_template", default="", help="frame file names; '' detects img_00001.jpg, 00001.jpg, ...")
  p.add_argument("--limit", type=int, default=0, help="only the first N videos of each split (trial runs)")
  p.add_argument("--quiet", action="store_true", help="no progress bar")
  args = p.parse_args(argv)
  args.splits = [s for s in args.splits.split(",") if s]
  for s in args.splits:
    if s not in ("train", "val"):
      p.error(f"--splits: {s!r} is not train or val")
  return args


def main(argv=None):
  logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
  return prepare(parse_args(argv))


if __name__ == "__main__":
  main()
