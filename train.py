"""Train a vidjax model: ``python train.py --config=configs/X.py --workdir=DIR [--config.a.b=value]``.

Running the same command again resumes from the last checkpoint in ``DIR/checkpoints``. Several processes
(hosts) run the same command each, with ``--coordinator_address/--num_processes/--process_id`` where the
cluster does not announce itself (see ``vidjax/train/distributed.py`` and the README's launch section).
"""
import logging
import sys

from absl import app, flags
from ml_collections import config_flags

from vidjax.train import distributed

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard logs and results.json.")
flags.mark_flags_as_required(["config", "workdir"])
distributed.define_flags()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  distributed.initialize_from_flags()
  from vidjax.train import checkpoint, loop
  try:
    summary = loop.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except (checkpoint.CheckpointMismatchError, FileNotFoundError) as e:
    logging.error("%s", e)
    sys.exit(2)
  summary.pop("state", None)
  logging.info("done: %s", summary)


if __name__ == "__main__":
  from vidjax.config_utils import check_overrides
  check_overrides(sys.argv)
  app.run(main)
