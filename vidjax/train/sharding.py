"""The device mesh and how arrays are placed on it.

One ``jax.jit`` with explicit ``NamedSharding``s serves 1 device, 8 simulated CPU devices, a GPU host,
several hosts and a TPU pod alike. The mesh has two axes built from ``config.mesh``:

* ``data`` (``mesh.data``, -1 = what ``fsdp`` leaves): plain data parallelism;
* ``fsdp`` (``mesh.fsdp``, default 1): fully-sharded data parallelism. The batch is split over *both*
  axes; every state leaf (parameter, momentum) with at least ``mesh.fsdp_min_size`` elements is split
  along its largest dimension divisible by ``mesh.fsdp``, everything else is replicated
  (``state_shardings``). XLA gathers the shards where a layer needs them and reduce-scatters the
  gradients: the update is the same as with replicated parameters, the memory per device is not.

BatchNorm statistics are computed over the *global* batch (XLA reduces them across devices); the
reference's PyTorch ``DataParallel`` computes them per GPU. See the README ("BatchNorm over devices").
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

BATCH_AXES = ("data", "fsdp")


def make_mesh(config) -> Mesh:
  """``Mesh(('data', 'fsdp'))`` over the first ``data x fsdp`` devices (all of them by default)."""
  devices = jax.devices()
  mesh_cfg = config.get("mesh", {})
  fsdp = int(mesh_cfg.get("fsdp", 1) or 1)
  data = mesh_cfg.get("data", -1)
  if fsdp < 1 or len(devices) % fsdp:
    raise ValueError(f"config.mesh.fsdp={fsdp} does not divide the {len(devices)} available devices")
  data = len(devices) // fsdp if data in (-1, None) else int(data)
  n = data * fsdp
  if data < 1 or n > len(devices) or len(devices) % n:
    raise ValueError(f"config.mesh.data={data} x config.mesh.fsdp={fsdp} = {n} devices does not divide the "
                     f"{len(devices)} available devices: set --config.mesh.data=-1 to use them all")
  if jax.process_count() > 1 and n != len(devices):
    raise ValueError(f"with {jax.process_count()} processes the mesh must use every device "
                     f"({len(devices)}), not {n}: set --config.mesh.data=-1")
  # jax.devices() lists the devices process by process, so each host's devices are neighbours on 'data'.
  return Mesh(np.asarray(devices[:n]).reshape(data, fsdp), BATCH_AXES)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over every device of the mesh."""
  return NamedSharding(mesh, P(BATCH_AXES))


def leaf_spec(shape: tuple, fsdp: int, min_size: int) -> P:
  """FSDP rule for one array: split its largest dimension divisible by ``fsdp`` if it is big enough."""
  if fsdp <= 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
    return P()
  dims = sorted(range(len(shape)), key=lambda d: (-shape[d], -d))
  for d in dims:
    if shape[d] % fsdp == 0:
      spec = [None] * len(shape)
      spec[d] = "fsdp"
      return P(*spec)
  return P()


def state_shardings(abstract_state, mesh: Mesh, config):
  """A ``NamedSharding`` for every leaf of the train state (parameters and optimiser state alike)."""
  fsdp = mesh.shape["fsdp"]
  min_size = int(config.get("mesh", {}).get("fsdp_min_size", 2 ** 18))
  return jax.tree.map(lambda a: NamedSharding(mesh, leaf_spec(tuple(a.shape), fsdp, min_size)), abstract_state)


def to_global(batch: dict, mesh: Mesh) -> dict:
  """Host-local numpy batch -> global ``jax.Array`` split over the mesh (multi-host safe)."""
  sharding = data_sharded(mesh)
  n = mesh.size
  for k, v in batch.items():
    if v.shape[0] * jax.process_count() % n:
      raise ValueError(f"global batch {v.shape[0] * jax.process_count()} is not divisible by the "
                       f"{n} devices of the mesh: change config.optim.batch_size")
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}
