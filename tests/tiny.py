"""A tiny configuration shared by the end-to-end tests (seconds per run on 2 cores)."""
from configs import synthetic_tsm


def tiny_config(**overrides):
  c = synthetic_tsm.get_config()
  c.model.width = 0.0625
  c.model.stage_sizes = (1, 1, 1, 1)
  c.data.synthetic.num_train = 32
  c.data.synthetic.num_val = 16
  c.data.synthetic.num_frames = 8
  c.data.synthetic.height = c.data.synthetic.width = 32
  c.data.crop_size = c.data.scale_size = 32
  c.data.num_segments = 4
  c.data.num_workers = 1
  c.optim.batch_size = 8
  c.optim.epochs = 2
  c.train.log_every = 2
  c.train.checkpoint_every = 3
  for k, v in overrides.items():
    node = c
    *path, leaf = k.split(".")
    for p in path:
      node = node[p]
    node[leaf] = v
  return c
