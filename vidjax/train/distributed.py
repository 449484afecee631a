"""Starting JAX's multi-process runtime: several hosts (or several processes on one host) as one mesh.

``initialize(...)`` is called by ``train.py`` and ``python -m vidjax.evaluate`` before anything touches
a device:

* explicit flags ``--coordinator_address=HOST:PORT --num_processes=N --process_id=I`` (any cluster,
  and the 2-process test on 127.0.0.1);
* otherwise ``jax.distributed.initialize()`` with no arguments, which detects its peers itself, when
  the environment says this is one of several processes: a TPU VM pod slice (``TPU_WORKER_HOSTNAMES``
  / ``MEGASCALE_*`` set by the TPU runtime with more than one host), SLURM (``SLURM_NTASKS`` > 1; jax
  reads the node list and task id), or Open MPI (``OMPI_COMM_WORLD_SIZE`` > 1);
* a single process otherwise: nothing to do.

After it, ``jax.devices()`` lists every device of every process; each process feeds its own part of
each global batch (``input_pipeline.pipeline``) and orbax saves from all of them.
"""
from __future__ import annotations

import logging
import os

import jax

_log = logging.getLogger("vidjax")


def _env_says_multiprocess() -> bool:
  env = os.environ
  if int(env.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_STEP_ID" in env:
    return True
  if int(env.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1:
    return True
  hosts = env.get("TPU_WORKER_HOSTNAMES", "")
  return len([h for h in hosts.split(",") if h]) > 1


def initialize(coordinator_address: str = "", num_processes: int = 0, process_id: int = -1,
               local_device_ids: str = "") -> bool:
  """Starts ``jax.distributed`` when launched as one of several processes; returns whether it did."""
  if coordinator_address or num_processes > 1:
    if not (coordinator_address and num_processes > 0 and process_id >= 0):
      raise ValueError("multi-process launch needs all three of --coordinator_address=HOST:PORT, "
                       f"--num_processes=N and --process_id=I (got {coordinator_address!r}, {num_processes}, "
                       f"{process_id})")
    ids = [int(i) for i in local_device_ids.split(",")] if local_device_ids else None
    jax.distributed.initialize(coordinator_address, num_processes, process_id, local_device_ids=ids)
  elif _env_says_multiprocess():
    jax.distributed.initialize()
  else:
    return False
  _log.info("process %d of %d: %d local devices, %d in all", jax.process_index(), jax.process_count(),
            jax.local_device_count(), jax.device_count())
  return True


def define_flags() -> None:
  """The absl flags of a multi-process launch (``train.py``, ``python -m vidjax.evaluate``)."""
  from absl import flags
  flags.DEFINE_string("coordinator_address", "", "Multi-process launch: HOST:PORT of process 0 (not needed on "
                      "TPU pods, SLURM or Open MPI, where jax finds its peers itself).")
  flags.DEFINE_integer("num_processes", 0, "Multi-process launch: number of processes.")
  flags.DEFINE_integer("process_id", -1, "Multi-process launch: this process' index, 0 .. num_processes - 1.")
  flags.DEFINE_string("local_device_ids", "", "Optional: comma-separated local devices this process uses.")


def initialize_from_flags() -> None:
  """``initialize`` from the flags of ``define_flags``; then only process 0 logs below WARNING."""
  from absl import flags
  from vidjax.train.metrics import setup_logging
  f = flags.FLAGS
  setup_logging()
  initialize(f.coordinator_address, f.num_processes, f.process_id, f.local_device_ids)
  if jax.process_index() > 0:  # one voice: only process 0 prints progress
    setup_logging(logging.WARNING)
