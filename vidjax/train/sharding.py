"""The device mesh and how arrays are placed on it.

One ``jax.jit`` with explicit shardings serves 1 device, 8 simulated CPU devices, a GPU host and a TPU
pod alike: batches are split over the ``data`` axis, parameters and optimiser state are replicated.
BatchNorm statistics are therefore computed over the *global* batch (the reference's per-GPU BN
differs; see the README).
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def make_mesh(config) -> Mesh:
  devices = jax.devices()
  n = config.mesh.get("data", -1)
  n = len(devices) if n in (-1, None) else int(n)
  if n > len(devices) or len(devices) % n:
    raise ValueError(f"config.mesh.data={n} does not divide the {len(devices)} available devices")
  return Mesh(np.asarray(devices[:n]), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))


def to_global(batch: dict, mesh: Mesh) -> dict:
  """Host-local numpy batch -> global ``jax.Array`` split over ``data`` (multi-host safe)."""
  sharding = data_sharded(mesh)
  n = mesh.shape["data"]
  for k, v in batch.items():
    if v.shape[0] * jax.process_count() % n:
      raise ValueError(f"global batch {v.shape[0] * jax.process_count()} is not divisible by the "
                       f"{n} devices of the 'data' axis: change config.optim.batch_size")
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}
