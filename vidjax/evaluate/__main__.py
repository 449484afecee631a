"""``python -m vidjax.evaluate --config=configs/X.py --workdir=DIR``"""
import json
import logging
import sys

from absl import app, flags
from ml_collections import config_flags

from vidjax.evaluate import evaluate

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory holding checkpoints/; results.json is written there.")
flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  from vidjax.train.metrics import setup_logging
  setup_logging()
  print(json.dumps(evaluate(FLAGS.config, FLAGS.workdir, step=FLAGS.step)))


if __name__ == "__main__":
  from vidjax.config_utils import check_overrides
  check_overrides(sys.argv)
  app.run(main)
