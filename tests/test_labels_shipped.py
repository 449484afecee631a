"""The shipped Something-Something V1 label map, ``input_pipeline/labels/something_v1.txt``.

The 174 names of the official ``something-something-v1-labels.csv`` in Python ``sorted()`` order, the
class-index order of the TSM-style list files (``tools/gen_label_sthv1.py`` sorts the csv's names before
numbering them) and of ``input_pipeline.sources.something.read_labels``.
"""
import os

import predict
from input_pipeline.sources.kinetics import LABELS_DIR, read_class_list

PATH = os.path.join(LABELS_DIR, "something_v1.txt")


def test_something_v1_has_174_unique_sorted_names():
  names = read_class_list(PATH)  # raises on duplicates
  assert len(names) == 174 and len(set(names)) == 174
  assert list(names) == sorted(names)
  assert all(n == n.strip() and n and "[" not in n and "]" not in n for n in names)
  assert (names[0], names[1], names[-1]) == ("Approaching something with your camera",
                                             "Attaching something to something",
                                             "Wiping something off of something")
  with open(PATH, encoding="utf-8") as fh:
    text = fh.read()
  assert text.endswith("\n") and not text.endswith("\n\n") and len(text.splitlines()) == 174


def test_something_v1_matches_the_reader_order(tmp_path):
  """The dataset reader numbers the classes of a labels csv (any line order) as the shipped file does."""
  from input_pipeline.sources.something import read_labels
  names = read_class_list(PATH)
  csv = tmp_path / "something-something-v1-labels.csv"
  csv.write_text("\n".join(reversed(names)) + "\n", encoding="utf-8")
  assert read_labels(str(csv)) == names


def test_predict_uses_the_shipped_sthv1_labels():
  from configs import default
  c = default.get_config()
  c.data.dataset, c.model.num_classes = "sthv1", 174
  assert predict.LABEL_FILES["sthv1"][0] == "something_v1.txt"
  assert predict.class_names(c) == read_class_list(PATH)
