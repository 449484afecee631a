"""Built-in motion dataset: the class of a clip is defined only by how an object moves.

A textured object (ellipse, rectangle or triangle, its own random texture and colour) moves over a textured
static background, with camera jitter and sensor noise. The eight classes are

    0 left   1 right   2 up   3 down   4 approach (grows)   5 recede (shrinks)
    6 rotate clockwise   7 rotate counter-clockwise

Start position, size, angle and speed are drawn so that the distribution of any single frame is the
same for every class (a left-moving and a right-moving object sweep the same positions; growth and
shrinkage cover the same sizes; the start angle is uniform): as in Something-Something, one frame
carries no label information and a model must compare frames.

Every clip is a pure function of ``(seed, split, index)``, so the dataset is deterministic, needs no
disk, and has any number of frames and any size. ``write_rawframes`` and ``write_videos`` put it on
disk in the two layouts real users have (TSN/MMAction rawframes + ``path num_frames label`` list;
video files + ``path label`` list), so that the readers of real data are tested on it.
"""
from __future__ import annotations

import dataclasses
import os
import numpy as np

CLASS_NAMES = ("move left", "move right", "move up", "move down", "approach", "recede",
               "rotate clockwise", "rotate counter-clockwise")
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
MAX_TURN = np.pi / 6  # radians per frame: a quarter of the 120-degree symmetry of the triangle


def _smooth_texture(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
  """Colour texture in [0, 1]: random cells upsampled bilinearly (a few blobs across the image)."""
  grid = rng.random((cells + 1, cells + 1, 3))
  ys = np.linspace(0, cells, h, endpoint=False)
  xs = np.linspace(0, cells, w, endpoint=False)
  y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
  fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
  g = grid
  top = g[y0][:, x0] * (1 - fx) + g[y0][:, x0 + 1] * fx
  bot = g[y0 + 1][:, x0] * (1 - fx) + g[y0 + 1][:, x0 + 1] * fx
  return top * (1 - fy) + bot * fy


@dataclasses.dataclass(frozen=True)
class SyntheticMotion:
  """Random-access source of motion clips: ``ds[i] -> {'video': uint8 (F,H,W,3), 'label', 'id'}``.

  Attributes:
    num_videos: clips in this split.
    num_frames: frames of every clip (samplers pick segments from them).
    height, width: frame size.
    num_classes: the first ``num_classes`` of ``CLASS_NAMES`` (2..8).
    split: 'train', 'val' or 'test' (different clips for the same seed).
    seed: dataset seed.
    noise: std of the Gaussian sensor noise (in [0, 255] units).
    jitter: maximum camera shake in pixels per frame.
    motion: scales the per-frame speed, growth and rotation (1: 2.5-4.5 % of the frame per frame;
      rotation is capped at ``MAX_TURN`` per frame so that its direction stays unambiguous).
    object_size: range of the object's radius at the middle frame, as a fraction of the frame.
  """
  num_videos: int = 1024
  num_frames: int = 16
  height: int = 64
  width: int = 64
  num_classes: int = 8
  split: str = "train"
  seed: int = 0
  noise: float = 6.0
  jitter: float = 1.0
  motion: float = 1.0
  object_size: tuple[float, float] = (0.22, 0.32)

  def __post_init__(self):
    if not 2 <= self.num_classes <= len(CLASS_NAMES):
      raise ValueError(f"num_classes must be in [2, {len(CLASS_NAMES)}], got {self.num_classes}")
    if self.split not in _SPLIT_IDS:
      raise ValueError(f"split must be one of {sorted(_SPLIT_IDS)}, got {self.split!r}")

  def __len__(self) -> int:
    return self.num_videos

  @property
  def class_names(self) -> tuple[str, ...]:
    return CLASS_NAMES[: self.num_classes]

  def label(self, index: int) -> int:
    # Balanced classes; the loader shuffles, so a fixed index -> class map loses nothing.
    return int(index % self.num_classes)

  def num_frames_of(self, index: int) -> int:
    del index
    return self.num_frames

  def video_id(self, index: int) -> str:
    return f"{self.split}_{index:06d}"

  def __getitem__(self, index: int) -> dict:
    if not 0 <= index < self.num_videos:
      raise IndexError(index)
    return {"video": self.render(index), "label": self.label(index), "id": self.video_id(index)}

  def load_clip(self, index: int, index_fn) -> np.ndarray:
    """``render(index)[index_fn(num_frames)]``: the ClipSource interface (sources/base.py)."""
    video = self.render(index)
    return video[np.asarray(index_fn(len(video)))]

  def render(self, index: int) -> np.ndarray:
    rng = np.random.default_rng([self.seed, _SPLIT_IDS[self.split], index])
    h, w, f = self.height, self.width, self.num_frames
    label = self.label(index)
    pad = int(np.ceil(self.jitter)) + 1
    background = _smooth_texture(rng, h + 2 * pad, w + 2 * pad, cells=rng.integers(3, 7))
    background = 0.25 + 0.5 * background
    tex_size = 32
    texture = rng.random((tex_size, tex_size, 3))  # fine, high-contrast object texture
    tint = rng.random(3)
    texture = np.clip(0.5 * texture + 0.5 * tint, 0, 1)
    shape = rng.integers(3)  # 0 ellipse, 1 rectangle (both 2:1: a disc or a square hides its turn), 2 triangle

    base = min(h, w)
    size = base * rng.uniform(*self.object_size)  # object radius at the middle frame
    t = np.arange(f) - (f - 1) / 2.0  # centred time: the middle frame is class-independent
    cy, cx = np.full(f, h / 2.0), np.full(f, w / 2.0)
    radius = np.full(f, size)
    angle = np.full(f, rng.uniform(0, 2 * np.pi))
    speed = base * rng.uniform(0.025, 0.045) * self.motion  # pixels per frame
    if label in (0, 1, 2, 3):
      sign = -1.0 if label in (0, 2) else 1.0
      travel = speed * (f - 1)
      span = max(base - 2 * size - travel, 0.0)
      mid_y = rng.uniform(size + travel / 2, size + travel / 2 + span) if label in (2, 3) else rng.uniform(size, h - size)
      mid_x = rng.uniform(size + travel / 2, size + travel / 2 + span) if label in (0, 1) else rng.uniform(size, w - size)
      cy[:], cx[:] = mid_y, mid_x
      if label in (0, 1):
        cx = mid_x + sign * speed * t
      else:
        cy = mid_y + sign * speed * t
    else:
      cy[:] = rng.uniform(h * 0.35, h * 0.65)
      cx[:] = rng.uniform(w * 0.35, w * 0.65)
    if label in (4, 5):
      growth = rng.uniform(0.04, 0.06) * self.motion * (1.0 if label == 4 else -1.0)
      radius = size * np.exp(growth * t)
    if label in (6, 7):
      # A triangle looks the same after 120 degrees, so a turn of +-60 degrees per frame is ambiguous (the
      # wagon-wheel effect): ``motion`` scales the turn rate up to MAX_TURN, never beyond.
      omega = min(rng.uniform(0.18, 0.3) * self.motion, MAX_TURN)
      omega *= -1.0 if label == 6 else 1.0  # clockwise = decreasing angle (y down)
      angle = angle[0] + omega * t
    shake = rng.uniform(-self.jitter, self.jitter, size=(f, 2))

    # Texture cells of ~2.5 px across the object: finer cells alias into noise on a small object and
    # hide its rotation.
    cells = int(np.clip(round(2 * size / 2.5), 3, tex_size))
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    frames = np.empty((f, h, w, 3), np.float64)
    for i in range(f):
      oy, ox = int(round(pad + shake[i, 0])), int(round(pad + shake[i, 1]))
      frame = background[oy:oy + h, ox:ox + w].copy()
      # object-local coordinates (rotation by -angle, scaled to [-1, 1])
      dy, dx = (yy - cy[i]) / radius[i], (xx - cx[i]) / radius[i]
      ca, sa = np.cos(angle[i]), np.sin(angle[i])
      u, v = ca * dx + sa * dy, -sa * dx + ca * dy
      if shape == 0:
        mask = u * u + (2.0 * v) ** 2 <= 1.0
      elif shape == 1:
        mask = (np.abs(u) <= 0.9) & (np.abs(v) <= 0.45)
      else:
        mask = (v <= 0.7) & (v >= 1.4 * np.abs(u) - 0.9)
      ti = np.clip(np.floor((v + 1) / 2 * cells).astype(int), 0, cells - 1)
      tj = np.clip(np.floor((u + 1) / 2 * cells).astype(int), 0, cells - 1)
      frame[mask] = texture[ti[mask], tj[mask]]
      frames[i] = frame
    frames = frames * 255.0 + rng.normal(0.0, self.noise, frames.shape)
    return np.clip(frames, 0, 255).astype(np.uint8)


def _write_list(path: str, rows: list[str]) -> None:
  with open(path, "w") as fh:
    fh.write("\n".join(rows) + "\n")


def crude_flow(video: np.ndarray, bound: float = 20.0) -> np.ndarray:
  """A crude optical flow of a uint8 clip ``(F, H, W, 3)`` -> uint8 ``(F - 1, H, W, 2)`` (x, y), for tests.

  NOT TV-L1: the *normal flow* of brightness constancy, ``-I_t grad(I) / (|grad(I)|^2 + 25)`` on the grey
  frames (the motion component along the image gradient; pair k is the motion from frame k to k + 1),
  stored as the flow extractors store flow: ``[-bound, bound]`` pixels -> ``[0, 255]``, 128 = no motion.
  """
  g = video.astype(np.float64).mean(axis=-1)
  out = np.empty((max(len(g) - 1, 0),) + g.shape[1:] + (2,), np.uint8)
  for k in range(len(out)):
    gy, gx = np.gradient((g[k] + g[k + 1]) / 2.0)
    scale = -(g[k + 1] - g[k]) / (gx * gx + gy * gy + 25.0)
    for c, d in enumerate((gx, gy)):
      out[k, ..., c] = np.round((np.clip(scale * d, -bound, bound) + bound) * 255.0 / (2 * bound))
  return out


def write_rawframes(source: SyntheticMotion, root: str, list_file: str,
                    template: str = "img_{:05d}.jpg", quality: int = 95, flow_template: str = "") -> str:
  """Writes TSN/MMAction rawframes: ``root/<id>/img_00001.jpg`` and ``path num_frames label`` lines.

  ``flow_template`` (e.g. ``flow_{}_{:05d}.jpg``): also writes the N - 1 flow pairs of each N-frame video
  as x/y grey JPEGs in the same folder, computed by ``crude_flow`` (a stand-in for TV-L1, for tests).
  """
  from PIL import Image
  os.makedirs(root, exist_ok=True)
  rows = []
  for i in range(len(source)):
    item = source[i]
    folder = os.path.join(root, item["id"])
    os.makedirs(folder, exist_ok=True)
    for k, frame in enumerate(item["video"]):
      Image.fromarray(frame).save(os.path.join(folder, template.format(k + 1)), quality=quality)
    if flow_template:
      for k, flow in enumerate(crude_flow(item["video"])):
        for c, axis in enumerate("xy"):
          Image.fromarray(np.ascontiguousarray(flow[..., c])).save(
              os.path.join(folder, flow_template.format(axis, k + 1)), quality=quality)
    rows.append(f"{item['id']} {len(item['video'])} {item['label']}")
  _write_list(list_file, rows)
  return list_file


def write_videos(source: SyntheticMotion, root: str, list_file: str, ext: str = "mp4",
                 fps: int = 12) -> str:
  """Writes one video file per clip (H.264 mp4 or MPEG-4 avi) and a ``path label`` list."""
  import av
  os.makedirs(root, exist_ok=True)
  codec = {"mp4": "libx264", "avi": "mpeg4", "webm": "libvpx"}[ext]
  rows = []
  for i in range(len(source)):
    item = source[i]
    name = f"{item['id']}.{ext}"
    with av.open(os.path.join(root, name), mode="w") as container:
      stream = container.add_stream(codec, rate=fps)
      stream.width, stream.height = source.width, source.height
      stream.pix_fmt = "yuv420p"
      if codec == "libx264":
        stream.options = {"crf": "12", "preset": "veryfast"}
      for frame in item["video"]:
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
          container.mux(packet)
      for packet in stream.encode():
        container.mux(packet)
    rows.append(f"{name} {item['label']}")
  _write_list(list_file, rows)
  return list_file
