"""Two-stream input (thesis section 3.2.3, Fig. 3.4): optical flow read as x/y grey JPEGs in the
rawframes layout, delivered with the RGB frames as ``(B, F, H, W, 3 + 2)`` uint8 clips.

The tiny tree written here encodes the frame number in constant planes (RGB red = 20 + 20 i, flow x =
40 + 20 k for pair k) and the position in identical ramps (RGB green = flow y = 3 col + 2 row), so
a clip shows which frames and pairs it was read from, whether RGB and flow were cropped alike, and
whether it was flipped (the ramp runs right to left).
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from input_pipeline import pipeline
from input_pipeline.sources.base import BAD_VIDEOS, BadVideoError
from input_pipeline.sources.rawframes import FlowFrames, RawFrames
from input_pipeline.sources.synthetic import SyntheticMotion, crude_flow, write_rawframes
from tests.tiny import tiny_config
from vidjax import config_utils
from vidjax.train import loop, sharding, step as step_lib

H, W, N = 32, 48, 6  # frame size; frames per video (N - 1 = 5 flow pairs)
TOL = 3  # JPEG (quality 100, no chroma subsampling) and bilinear rounding


@pytest.fixture(autouse=True)
def _fresh_log():
  BAD_VIDEOS.clear()
  yield
  BAD_VIDEOS.clear()


def _ramp():
  rows, cols = np.mgrid[0:H, 0:W]
  return (3 * cols + 2 * rows).astype(np.uint8)  # <= 3 * 47 + 2 * 31 = 203


def _save(path, array):
  Image.fromarray(array).save(path, quality=100, subsampling=0)


def _write_tree(root, flow_template="flow_{}_{:05d}.jpg", videos=("v0", "v1"), frames=N):
  """Rawframes with ``frames`` RGB frames and ``frames - 1`` flow pairs per video; returns the list."""
  ramp = _ramp()
  rows = []
  for label, vid in enumerate(videos):
    folder = os.path.join(root, vid)
    os.makedirs(folder)
    for i in range(frames):
      _save(os.path.join(folder, f"img_{i + 1:05d}.jpg"),
            np.stack([np.full((H, W), 20 + 20 * i, np.uint8), ramp, np.zeros((H, W), np.uint8)], -1))
    for k in range(frames - 1):
      _save(os.path.join(folder, flow_template.format("x", k + 1)), np.full((H, W), 40 + 20 * k, np.uint8))
      _save(os.path.join(folder, flow_template.format("y", k + 1)), ramp)
    rows.append(f"{vid} {frames} {label}")
  lst = os.path.join(root, "list.txt")
  with open(lst, "w") as fh:
    fh.write("\n".join(rows) + "\n")
  return lst


def _config(root, lst, modality="rgb+flow", segments=N, flow_template=""):
  c = tiny_config()
  c.data.dataset, c.data.root = "rawframes", root
  c.data.train_list = c.data.val_list = lst
  c.data.modality, c.data.flow_template = modality, flow_template
  c.data.num_segments, c.data.frames_per_segment, c.data.sampling = segments, 1, "segment"
  c.data.crop_size, c.data.scale_size, c.data.flip = 16, 16, True
  c.data.multi_scale = (1.0, 0.875, 0.75, 0.66)
  c.model.num_classes = 2
  return c


def _flow_x(i, pairs=N - 1):
  """Flow x of frame i: pair min(i, pairs - 1) (the motion i -> i + 1; the last frame takes the last)."""
  return 40 + 20 * np.minimum(i, pairs - 1)


def _check_clip(video, red, flow_x, rgb=True):
  """Frame values, and per clip: flipped iff the ramp falls left to right; x inverted iff flipped."""
  v = video.astype(np.int32)
  ramp = v[..., 1] if rgb else v[..., -1]
  flipped = bool(ramp[:, :, 0].mean() > ramp[:, :, -1].mean())
  if rgb:
    np.testing.assert_allclose(v[..., 0], np.broadcast_to(np.asarray(red)[:, None, None], v.shape[:3]), atol=TOL)
    np.testing.assert_allclose(v[..., 1], v[..., 4], atol=TOL)  # one crop (and flip) for RGB and flow
  want_x = 255 - np.asarray(flow_x) if flipped else np.asarray(flow_x)
  np.testing.assert_allclose(v[..., -2], np.broadcast_to(want_x[:, None, None], v.shape[:3]), atol=TOL)
  return flipped


def test_rgb_flow_clips_indices_shared_crop_and_flip(tmp_path):
  """(B, F, H, W, 5) uint8; frame i gets RGB frame i and flow pair min(i, N - 2); RGB and flow share the
  multi-scale crop box and the flip; a flipped clip's flow x is 255 - x (TSN GroupRandomHorizontalFlip
  is_flow); the fused (per decoded frame) and the array path give the same pixels."""
  root = str(tmp_path / "d")
  lst = _write_tree(root)
  c = _config(root, lst)
  source = pipeline.build_source(c, "train")
  assert isinstance(source, FlowFrames) and len(source) == 2
  flips, crops = set(), set()
  for seed in range(10):
    rng = np.random.default_rng(seed)
    ex = pipeline.train_example(source, c, seed % 2, rng)
    assert ex["video"].shape == (N, 16, 16, 5) and ex["video"].dtype == np.uint8
    i = np.arange(N)  # S = N segments of 1 frame on N frames: avg = 1, frames 0..N-1
    flips.add(_check_clip(ex["video"], 20 + 20 * i, _flow_x(i)))
    crops.add(int(ex["video"][0, 0, 0, 1]))
    slow = pipeline.train_example(source, c, seed % 2, np.random.default_rng(seed), fused=False)
    np.testing.assert_array_equal(ex["video"], slow["video"])
  assert flips == {False, True} and len(crops) > 2  # both flip outcomes and several crop boxes were seen
  batch = next(pipeline.train_batches(c, source, 0, 1))
  assert batch["video"].shape == (c.optim.batch_size, N, 16, 16, 5) and batch["video"].dtype == np.uint8


@pytest.mark.parametrize("template,configured", [("flow_{}_{:05d}.jpg", ""), ("{}_{:05d}.jpg", ""),
                                                 ("{}_{:05d}.jpg", "{}_{:05d}.jpg")])
def test_flow_only_and_evaluation_views(tmp_path, template, configured):
  """modality 'flow': (F, H, W, 2) sampled from the N - 1 pairs (the reference's Flow list count is
  frames - 1); TSN/TSM names flow_x_00001.jpg and mmaction2 names x_00001.jpg, detected or configured.
  Evaluation of rgb+flow: centre crop of segment centres int(tick/2 + tick k), tick = N / S."""
  root = str(tmp_path / "d")
  lst = _write_tree(root, template)
  c = _config(root, lst, "flow", segments=N - 1, flow_template=configured)
  source = pipeline.build_source(c, "train")
  for seed in range(4):
    video = pipeline.train_example(source, c, 0, np.random.default_rng(seed))["video"]
    assert video.shape == (N - 1, 16, 16, 2)
    _check_clip(video, None, _flow_x(np.arange(N - 1)), rgb=False)
  c = _config(root, lst, "rgb+flow", segments=3, flow_template=configured)
  ev = pipeline.eval_example(pipeline.build_source(c, "val"), c, 1)
  assert ev["video"].shape == (1, 3, 16, 16, 5) and ev["mask"] == 1
  centres = np.array([int(2 / 2 + 2 * k) for k in range(3)])  # tick = 6 / 3 = 2: frames 1, 3, 5
  assert not _check_clip(ev["video"][0], 20 + 20 * centres, _flow_x(centres))
  assert pipeline.empty_eval_example(c)["video"].shape == (1, 3, 16, 16, 5)


def test_missing_flow_is_a_clear_error_and_the_video_is_skipped(tmp_path):
  """A folder without flow names the folder and the expected files; a missing image with later ones
  present names that file; a folder one pair short repeats its last pair ('padded'); the loader skips
  unusable videos (BAD_VIDEOS 'skipped') as it does for RGB."""
  root = str(tmp_path / "d")
  lst = _write_tree(root, videos=("v0", "v1", "v2"))
  for name in os.listdir(os.path.join(root, "v1")):
    if name.startswith("flow_"):
      os.remove(os.path.join(root, "v1", name))
  os.remove(os.path.join(root, "v2", "flow_y_00002.jpg"))
  c = _config(root, lst)
  c.model.num_classes = 3
  source = pipeline.build_source(c, "train")
  index_fn = lambda n: np.arange(n)
  with pytest.raises(BadVideoError) as e:
    source.load_clip(1, index_fn)
  msg = str(e.value)
  assert os.path.join(root, "v1") in msg and "flow_x_00001.jpg" in msg and "flow_y_00001.jpg" in msg
  assert "x_00001.jpg" in msg  # the mmaction2 naming is named as well
  c2 = _config(root, lst, flow_template="flow_{}_{:05d}.jpg")
  c2.model.num_classes = 3
  with pytest.raises(BadVideoError, match=r"v1.*flow_x_00001\.jpg \+ flow_y_00001\.jpg"):
    pipeline.build_source(c2, "train").load_clip(1, index_fn)
  with pytest.raises(BadVideoError, match=r"v2/flow_y_00002\.jpg: flow image is missing"):
    source.load_clip(2, index_fn)
  # the loader replaces unusable videos by the next usable one and logs each once
  for seed in range(3):
    ex = pipeline.train_example(source, c, 1, np.random.default_rng(seed))
    assert ex["label"] == 0  # v1 (no flow) -> v2 (a hole at pair 2) -> v0
  assert BAD_VIDEOS.counts()["skipped"] == 2
  # a folder one pair short: the last pair repeats
  os.remove(os.path.join(root, "v0", "flow_x_00005.jpg"))
  os.remove(os.path.join(root, "v0", "flow_y_00005.jpg"))
  clip = source.load_clip(0, index_fn)
  np.testing.assert_allclose(clip[:, 0, 0, 3].astype(int), _flow_x(np.arange(N), N - 2), atol=TOL)
  assert BAD_VIDEOS.counts()["padded"] == 1


def test_flow_needs_frame_folders_and_matching_modalities(tmp_path):
  """Flow comes from frame folders only; data.modality and model.modality must agree; the model input
  has 3 / 2 / 5 channels."""
  c = tiny_config()
  c.data.modality = "rgb+flow"
  with pytest.raises(ValueError, match="frame folders"):
    pipeline.build_source(c, "train")  # the synthetic in-memory source
  assert config_utils.input_shape(c)[-1] == 5
  c.data.modality = "flow"
  assert config_utils.input_shape(c, 2)[::4] == (2, 2)
  c.model.modality = "rgb+flow"
  with pytest.raises(ValueError, match="modality"):
    config_utils.input_shape(c)
  from configs import tesnet_ucf101
  for m, ch in (("rgb", 3), ("flow", 2), ("rgb+flow", 5)):
    cfg = tesnet_ucf101.get_config(m)
    assert config_utils.input_shape(cfg) == (1, 10, 299, 299, ch)
    assert len(cfg.data.mean) == len(cfg.data.std) == ch


def test_normalize_flow_channels():
  """Flow normalisation of the reference (TSM ops/models.py, Flow: input_mean [0.5], input_std
  [mean(RGB std)]): (x / 255 - 0.5) / mean(std); JPEG 128 is (almost) zero motion. Five explicit
  entries are used as given."""
  mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
  x = np.random.default_rng(0).integers(0, 256, (2, 3, 4, 4, 5)).astype(np.uint8)
  got = np.asarray(step_lib.normalize(jnp.asarray(x), mean, std))
  s_flow = (0.229 + 0.224 + 0.225) / 3
  ref = np.concatenate([(x[..., :3] / 255.0 - np.array(mean)) / np.array(std),
                        (x[..., 3:] / 255.0 - 0.5) / s_flow], -1)
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
  assert abs(float(step_lib.normalize(jnp.full((1, 2), 128, jnp.uint8), mean, std)[0, 0])) < 0.01
  five = (0.1, 0.2, 0.3, 0.4, 0.6), (0.5, 0.4, 0.3, 0.2, 0.1)
  np.testing.assert_allclose(np.asarray(step_lib.normalize(jnp.asarray(x), *five)),
                             (x / 255.0 - np.array(five[0])) / np.array(five[1]), rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="entries"):
    step_lib.normalize(jnp.asarray(x), (0.5, 0.5), (0.5, 0.5))


def test_synthetic_crude_flow_sees_the_motion(tmp_path):
  """synthetic.crude_flow (normal flow, a test stand-in for TV-L1): N - 1 pairs per N frames, stored as
  x/y JPEGs; an object moving right gives flow x above 128 where the frame changes, one moving left
  below, and vertical motion shows in y."""
  src = SyntheticMotion(num_videos=4, num_frames=5, height=32, width=32, noise=0.0, jitter=0.0)
  for index, channel, sign in ((0, 0, -1), (1, 0, 1), (2, 1, -1), (3, 1, 1)):  # left, right, up, down
    video = src.render(index)
    flow = crude_flow(video).astype(np.float64)
    assert flow.shape == (4, 32, 32, 2)
    moving = np.abs(np.diff(video.astype(np.float64).mean(-1), axis=0)) > 10
    assert sign * (flow[..., channel][moving].mean() - 128) > 3, (index, flow[..., channel][moving].mean())
  lst = write_rawframes(src, str(tmp_path / "s"), str(tmp_path / "s.txt"), flow_template="flow_{}_{:05d}.jpg")
  names = sorted(os.listdir(tmp_path / "s" / "train_000000"))
  assert names.count("img_00005.jpg") == 1 and "flow_x_00004.jpg" in names and "flow_y_00005.jpg" not in names
  assert RawFrames(str(tmp_path / "s"), lst).num_frames_of(0) == 5


def test_tiny_two_stream_tesnet_trains_on_rgb_flow_rawframes(tmp_path):
  """One train step (loop.setup + step.jit_train_step) of a tiny two-stream TeSNet (Fig. 3.4; ResNet-50
  stem and one bottleneck at 1/16 width per stream, to keep the compile short) on rgb+flow rawframes:
  finite loss, and both streams' first convs are updated."""
  src = SyntheticMotion(num_videos=4, num_frames=6, height=32, width=32, num_classes=2)
  lst = write_rawframes(src, str(tmp_path / "s"), str(tmp_path / "s.txt"), flow_template="flow_{}_{:05d}.jpg")
  c = _config(str(tmp_path / "s"), lst, segments=4)
  c.model.name, c.model.backbone, c.model.modality = "tesnet", "resnet50", "rgb+flow"
  c.model.width, c.model.stage_sizes, c.model.dropout, c.model.shift = 0.0625, (1, 0, 0, 0), 0.0, False
  c.model.tsp_layers, c.model.num_segments = ("input:2",), 1
  c.optim.batch_size, c.optim.steps_per_epoch, c.train.total_steps = 2, 1, 1
  s = loop.setup(c, "")
  state = s["init"]()
  first = lambda st, stream: np.asarray(st.params[stream]["backbone"]["stem"]["conv1"]["kernel"])
  before = {k: first(state, k) for k in ("rgb_stream", "flow_stream")}
  assert before["flow_stream"].shape[2] == 2 and before["rgb_stream"].shape[2] == 3
  fn = step_lib.jit_train_step(s["model"], s["tx"], c, s["state_sharding"], sharding.data_sharded(s["mesh"]))
  batch = next(pipeline.train_batches(c, s["train_source"], 0, 1))
  assert batch["video"].shape == (2, 4, 16, 16, 5)
  state, metrics = fn(state, sharding.to_global(batch, s["mesh"]))
  assert np.isfinite(float(metrics["loss"])) and float(metrics["aux_loss"]) > 0  # TSP l_proj of both streams
  for k, w in before.items():
    assert np.abs(first(state, k) - w).max() > 0, k
  jax.block_until_ready(state.params)
