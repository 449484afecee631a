"""The embedded demo: a narrow TSM-ResNet-50 learns the built-in motion classes on a CPU.

8 segments x 1 frame of 48 x 48 px from 16-frame synthetic clips (input_pipeline/sources/synthetic.py),
8 motion classes that no single frame can tell apart. ``--config.model.shift=False`` with
``--config.data.num_segments=1`` is the appearance-only control (one frame per clip, no temporal shift).

    python train.py --config=configs/synthetic_tsm.py --workdir=runs/synthetic_tsm
"""
import ml_collections

from configs import default


def get_config():
  c = default.get_config()
  c.model.name = "tsm_resnet"
  c.model.depth = 50
  c.model.width = 0.125  # 8..64 bottleneck channels (thesis' ResNet-50 at 1/8 width)
  c.model.num_classes = 8
  c.model.dropout = 0.2
  c.model.shift = True

  c.data.dataset = "synthetic"
  c.data.synthetic = ml_collections.ConfigDict(dict(
      num_train=2048, num_val=512, num_frames=16, height=48, width=48, num_classes=8, seed=0,
      noise=6.0, jitter=1.0))
  c.data.num_segments = 8
  c.data.frames_per_segment = 1
  c.data.sampling = "segment"
  c.data.crop_size = 48
  c.data.scale_size = 48
  c.data.multi_scale = (1.0, 0.875)
  c.data.flip = False  # a flip turns 'left' into 'right': never flip motion-defined classes
  c.data.mean = (0.5, 0.5, 0.5)
  c.data.std = (0.25, 0.25, 0.25)

  c.optim.lr = 0.1
  c.optim.batch_size = 32
  c.optim.epochs = 6
  c.optim.warmup_epochs = 0.5
  c.optim.weight_decay = 1e-4
  c.optim.label_smoothing = 0.0

  c.train.log_every = 20
  c.train.checkpoint_every = 100
  return c
