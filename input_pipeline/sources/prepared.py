"""Reading a dataset written by ``python -m input_pipeline.prepare``: TFDS ArrayRecord, no TensorFlow.

``tfds.builder_from_directory(dir).as_data_source(split)`` gives random access to the records. The
records are read as raw bytes and parsed as the ``tf.train.Example`` proto TFDS writes (its own copy of
the proto, no TensorFlow) *without* decoding the images, so only the frames a clip samples are copied
out and JPEG-decoded (a Kinetics record holds ~300 frames; a TSN clip needs 8-48 of them). The records
are stored uncompressed (prepare.py): JPEG does not compress further. The label, id and frame count of every record are also kept in
``vidjax-index-<split>.json`` beside the records, so labels are known without reading records.
"""
from __future__ import annotations

import json
import os

import numpy as np

from input_pipeline.sources.base import BAD_VIDEOS, BadVideoError, BadVideoLog, DatasetLayoutError
from input_pipeline.sources.rawframes import decode_image
from input_pipeline.transforms import stack_frames

EXPECTED = ("a folder written by 'python -m input_pipeline.prepare DATASET --out=DIR' holding "
            "dataset_info.json, features.json and <name>-<split>.array_record-XXXXX-of-YYYYY shards")


def index_path(directory: str, split: str) -> str:
  return os.path.join(directory, f"vidjax-index-{split}.json")


class PreparedSource:
  """A ClipSource over one split of a prepared TFDS ArrayRecord dataset."""

  def __init__(self, directory: str, split: str, short_side: int = 0, log: BadVideoLog = BAD_VIDEOS):
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core import example_parser
    if not os.path.isfile(os.path.join(directory, "dataset_info.json")):
      raise DatasetLayoutError(f"{directory!r} is not a prepared dataset: expected {EXPECTED}")
    builder = tfds.builder_from_directory(directory)
    if split not in builder.info.splits:
      raise DatasetLayoutError(f"{directory!r} has splits {sorted(builder.info.splits)}, not {split!r} "
                               f"(prepare it with --splits=...{split})")
    self.directory, self.split, self.short_side, self.log = directory, split, short_side, log
    self.info = builder.info
    self._ds = builder.as_data_source(split=split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
    self._parser = example_parser.ExampleParserNp(builder.info.features.get_serialized_info())
    from tensorflow_datasets.proto import tf_example_pb2
    self._example = tf_example_pb2.Example  # the tf.train.Example proto TFDS ships (no TensorFlow)
    self.class_names = tuple(builder.info.features["label"].names)
    self._index = None
    if os.path.isfile(index_path(directory, split)):
      with open(index_path(directory, split)) as fh:
        self._index = json.load(fh)
      if len(self._index["label"]) != len(self._ds):
        self._index = None  # stale: fall back to reading records

  def __len__(self):
    return len(self._ds)

  def __repr__(self):
    return f"PreparedSource({self.directory}[{self.split}]: {len(self)} videos)"

  def _frames(self, index: int):
    """``(JPEG bytes per frame, video id)`` straight from the proto: only the frames asked for are copied
    out (TFDS's parser would turn every frame of the record into a NumPy object first)."""
    try:
      feature = self._example.FromString(self._ds[index]).features.feature
      return feature["frames"].bytes_list.value, feature["video_id"].bytes_list.value[0].decode()
    except Exception as e:
      raise BadVideoError(f"{self.directory}[{self.split}][{index}]",
                          f"record cannot be read ({e.__class__.__name__}: {e})", "prepare the dataset again") from None

  def record(self, index: int) -> dict:
    """The parsed record: ``frames`` (JPEG bytes per frame), ``label``, ``video_id``, ``num_frames``."""
    try:
      return self._parser.parse_example(self._ds[index])
    except Exception as e:
      raise BadVideoError(f"{self.directory}[{self.split}][{index}]",
                          f"record cannot be read ({e.__class__.__name__}: {e})", "prepare the dataset again") from None

  def label(self, index: int) -> int:
    if self._index is not None:
      return int(self._index["label"][index])
    return int(self.record(index)["label"])

  def video_id(self, index: int) -> str:
    if self._index is not None:
      return self._index["video_id"][index]
    v = self.record(index)["video_id"]
    return v.decode() if isinstance(v, bytes) else str(v)

  def num_frames_of(self, index: int) -> int:
    if self._index is not None:
      return int(self._index["num_frames"][index])
    return int(self.record(index)["num_frames"])

  fused_frames = True  # load_clip takes a frame_fn (pipeline.train_example)

  def load_clip(self, index: int, index_fn, frame_fn=None) -> np.ndarray:
    frames, vid = self._frames(index)
    if len(frames) == 0:
      raise BadVideoError(f"{self.directory}[{self.split}][{index}]", "record has no frames")
    idx = np.asarray(index_fn(len(frames)))
    cache = {}
    for k in np.unique(idx):
      try:
        cache[int(k)] = decode_image(frames[int(k)], self.short_side, frame_fn)
      except (OSError, ValueError) as e:
        raise BadVideoError(f"{self.directory}[{self.split}] {vid} frame {int(k)}",
                            f"JPEG cannot be decoded ({e})", "prepare the dataset again") from None
    return stack_frames([cache[int(k)] for k in idx.reshape(-1)], idx.shape, frame_fn)
