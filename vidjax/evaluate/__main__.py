"""``python -m vidjax.evaluate --config=configs/X.py --workdir=DIR``"""
import json
import sys

import jax

from absl import app, flags
from ml_collections import config_flags

from vidjax.evaluate import evaluate
from vidjax.train import distributed

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory holding checkpoints/; results.json is written there.")
flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
flags.mark_flags_as_required(["config", "workdir"])
distributed.define_flags()


def main(argv):
  del argv
  distributed.initialize_from_flags()
  results = evaluate(FLAGS.config, FLAGS.workdir, step=FLAGS.step)
  if jax.process_index() == 0:
    print(json.dumps(results))


if __name__ == "__main__":
  from vidjax.config_utils import check_overrides
  check_overrides(sys.argv)
  app.run(main)
