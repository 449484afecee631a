"""notebooks/quickstart.ipynb runs top to bottom on a checkpoint trained on the synthetic data.

The model is the tiny TSM-ResNet of tests/tiny.py with one RNL block after res3 block 0, trained for two
steps by ``vidjax.train.loop`` (which writes ``config.json`` and the orbax checkpoint the notebook
restores). The code cells are executed in order in one namespace, with the parameters cell's values
replaced as papermill would; the test then checks what the notebook computed: the restored step, a top-5
of synthetic class names, the MBPM picture and the attention picture.
"""
import json
import os

import numpy as np

from input_pipeline.sources.synthetic import CLASS_NAMES
from tests.tiny import tiny_config
from vidjax.models.attention_net import default_attention_config
from vidjax.train import loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "notebooks", "quickstart.ipynb")


def test_quickstart_notebook(tmp_path):
  c = tiny_config(**{"model.name": "attention_tsm_resnet", "train.total_steps": 2, "train.eval_at_end": False})
  c.model.attention = default_attention_config()
  c.model.attention.positions = ((2, 0),)
  workdir = str(tmp_path / "run")
  assert loop.train_and_evaluate(c, workdir)["step"] == 2

  with open(NOTEBOOK) as fh:
    nb = json.load(fh)
  assert nb["nbformat"] == 4
  cells = [cell for cell in nb["cells"] if cell["cell_type"] == "code"]
  assert "parameters" in cells[0]["metadata"].get("tags", [])
  ns = {"__name__": "__main__"}
  exec(compile("".join(cells[0]["source"]), "parameters", "exec"), ns)
  assert {"WORKDIR", "CONFIG", "OVERRIDES", "VIDEO"} <= set(ns)
  ns.update(WORKDIR=workdir, CONFIG="", OVERRIDES={}, VIDEO="")
  cwd = os.getcwd()
  try:
    for i, cell in enumerate(cells[1:], 1):
      exec(compile("".join(cell["source"]), f"cell {i}", "exec"), ns)
  finally:
    os.chdir(cwd)

  assert ns["step"] == 2
  top = ns["result"]["top"]
  assert len(top) == 5 and all(t["label"] in CLASS_NAMES for t in top)
  probs = [t["probability"] for t in top]
  assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
  for name in ("mbpm_img", "att_img"):
    img = ns[name]
    assert img is not None and img.ndim == 3 and img.shape[2] == 3 and img.std() > 10, name
  assert ns["att_img"].shape[0] > 2 * 96  # two reference positions, one row each
