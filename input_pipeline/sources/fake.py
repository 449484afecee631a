"""Tiny fake copies of the benchmarks' on-disk layouts, for tests and benchmarks.

Each writer renders ``SyntheticMotion`` clips, stores them the way the real dataset ships (video files
encoded with PyAV, or JPEG frame folders) and writes the official annotation files in their formats.
They return ``{split: [(video_id, class_name, clip_index), ...]}`` so that tests can compare what the
readers return with the clip that was written (``SyntheticMotion(...).render(clip_index)``).
"""
from __future__ import annotations

import csv
import os

from input_pipeline.sources.synthetic import SyntheticMotion


def _write_video(frames, path: str, fps: int = 12) -> None:
  import av
  ext = os.path.splitext(path)[1]
  codec = {".mp4": "libx264", ".avi": "mpeg4", ".mkv": "libx264", ".webm": "libvpx"}[ext]
  os.makedirs(os.path.dirname(path), exist_ok=True)
  # mp4 index at the front ('faststart', as web-downloaded Kinetics files): a truncated file still opens
  options = {"movflags": "faststart"} if ext == ".mp4" else {}
  with av.open(path, mode="w", options=options) as container:
    stream = container.add_stream(codec, rate=fps)
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt = "yuv420p"
    if codec == "libx264":
      stream.options = {"crf": "12", "preset": "veryfast"}
    elif codec == "mpeg4":
      stream.options = {"qscale": "2"}
    for f in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def _write_frames(frames, folder: str, template: str, quality: int = 95) -> None:
  from PIL import Image
  os.makedirs(folder, exist_ok=True)
  for k, f in enumerate(frames):
    Image.fromarray(f).save(os.path.join(folder, template.format(k + 1)), quality=quality)


def _store(src: SyntheticMotion, i: int, path_no_ext: str, layout: str, ext: str, template: str):
  if layout == "videos":
    _write_video(src.render(i), path_no_ext + ext)
  else:
    _write_frames(src.render(i), path_no_ext, template)


def write_kinetics(root: str, annotations: str, classes, per_split=None, layout: str = "videos",
                   num_frames: int = 12, size=(32, 40), label_folders: bool = True, seed: int = 0) -> dict:
  """Kinetics-400: ``train.csv`` / ``validate.csv`` (label,youtube_id,time_start,time_end,split) and
  ``root/{train,val}/<label>/<id>_<start:06d>_<end:06d>.mp4`` (or frame folders of that name)."""
  per_split = per_split or {"train": 4, "val": 2}
  src = SyntheticMotion(num_videos=sum(per_split.values()), num_frames=num_frames, height=size[0],
                        width=size[1], num_classes=8, seed=seed)
  os.makedirs(annotations, exist_ok=True)
  out, k = {}, 0
  for split, n in per_split.items():
    rows = []
    for j in range(n):
      label = classes[k % len(classes)]
      ytid, start = f"yt{split[0]}{j:03d}-_x{k}", 10 * j
      name = f"{ytid}_{start:06d}_{start + 10:06d}"
      sub = [split, label.replace(" ", "_")] if label_folders else [split]
      _store(src, k, os.path.join(root, *sub, name), layout, ".mp4", "img_{:05d}.jpg")
      rows.append([label, ytid, start, start + 10, split if split == "train" else "val"])
      out.setdefault(split, []).append((name, label, k))
      k += 1
    with open(os.path.join(annotations, "train.csv" if split == "train" else "validate.csv"), "w",
              newline="") as fh:
      w = csv.writer(fh)
      w.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
      w.writerows(rows)
  return out


def write_sthv1(root: str, annotations: str, classes, per_split=None, num_frames: int = 12,
                size=(32, 40), seed: int = 0) -> dict:
  """Something-Something V1: ``something-something-v1-{labels,train,validation}.csv`` (';'-separated)
  and ``root/20bn-something-something-v1/<id>/00001.jpg``."""
  per_split = per_split or {"train": 4, "val": 2}
  src = SyntheticMotion(num_videos=sum(per_split.values()), num_frames=num_frames, height=size[0],
                        width=size[1], num_classes=8, seed=seed)
  os.makedirs(annotations, exist_ok=True)
  with open(os.path.join(annotations, "something-something-v1-labels.csv"), "w") as fh:
    fh.write("".join(c + "\n" for c in classes))
  out, k = {}, 0
  for split, n in per_split.items():
    lines = []
    for j in range(n):
      vid, label = str(1000 + k), classes[k % len(classes)]
      _write_frames(src.render(k), os.path.join(root, "20bn-something-something-v1", vid), "{:05d}.jpg")
      lines.append(f"{vid};{label}\n")
      out.setdefault(split, []).append((vid, label, k))
      k += 1
    name = "train" if split == "train" else "validation"
    with open(os.path.join(annotations, f"something-something-v1-{name}.csv"), "w") as fh:
      fh.write("".join(lines))
  return out


def write_ucf101(root: str, annotations: str, classes, groups=(1, 2, 3, 8), layout: str = "videos",
                 num_frames: int = 12, size=(32, 40), seed: int = 0) -> dict:
  """UCF101: ``classInd.txt``, ``trainlist0k.txt`` / ``testlist0k.txt`` (k = 1..3; groups 1-7 are the
  test groups of split 1, 8-14 of split 2, 15-21 of split 3) and ``root/UCF-101/<Class>/v_<Class>_gXX_c01.avi``."""
  src = SyntheticMotion(num_videos=len(classes) * len(groups), num_frames=num_frames, height=size[0],
                        width=size[1], num_classes=8, seed=seed)
  os.makedirs(annotations, exist_ok=True)
  with open(os.path.join(annotations, "classInd.txt"), "w") as fh:
    fh.write("".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
  videos, k = [], 0
  for c in classes:
    for g in groups:
      stem = f"v_{c}_g{g:02d}_c01"
      _store(src, k, os.path.join(root, "UCF-101", c, stem), layout, ".avi", "img_{:05d}.jpg")
      videos.append((c, stem, g, k))
      k += 1
  out = {}
  for split_id in (1, 2, 3):
    test_groups = range(7 * (split_id - 1) + 1, 7 * split_id + 1)
    train = [(c, s, k) for c, s, g, k in videos if g not in test_groups]
    test = [(c, s, k) for c, s, g, k in videos if g in test_groups]
    with open(os.path.join(annotations, f"trainlist{split_id:02d}.txt"), "w") as fh:
      fh.write("".join(f"{c}/{s}.avi {classes.index(c) + 1}\n" for c, s, _ in train))
    with open(os.path.join(annotations, f"testlist{split_id:02d}.txt"), "w") as fh:
      fh.write("".join(f"{c}/{s}.avi\n" for c, s, _ in test))
    out[split_id] = {"train": [(s, c, k) for c, s, k in train], "val": [(s, c, k) for c, s, k in test]}
  return out


def write_hmdb51(root: str, annotations: str, classes, per_class: int = 3, layout: str = "videos",
                 num_frames: int = 12, size=(32, 40), seed: int = 0) -> dict:
  """HMDB51: ``<class>_test_split<k>.txt`` (``<video>.avi <0|1|2>``) and ``root/<class>/<video>.avi``.

  Video j of a class is training (1) in split k when ``(j + k) % 3 == 0``, testing (2) when it is 1,
  unused (0) otherwise."""
  src = SyntheticMotion(num_videos=len(classes) * per_class, num_frames=num_frames, height=size[0],
                        width=size[1], num_classes=8, seed=seed)
  os.makedirs(annotations, exist_ok=True)
  out, k = {1: {}, 2: {}, 3: {}}, 0
  names = {}
  for c in classes:
    for j in range(per_class):
      stem = f"Some_(video)_{c}_f_nm_np1_fr_med_{j}"
      _store(src, k, os.path.join(root, c, stem), layout, ".avi", "img_{:05d}.jpg")
      names[(c, j)] = (stem, k)
      k += 1
  for split_id in (1, 2, 3):
    for c in classes:
      lines = []
      for j in range(per_class):
        tag = {0: 1, 1: 2, 2: 0}[(j + split_id) % 3]
        stem, kk = names[(c, j)]
        lines.append(f"{stem}.avi {tag} \n")
        if tag:
          out[split_id].setdefault("train" if tag == 1 else "val", []).append((stem, c, kk))
      with open(os.path.join(annotations, f"{c}_test_split{split_id}.txt"), "w") as fh:
        fh.write("".join(lines))
  return out
