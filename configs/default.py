"""Shared defaults for every vidjax experiment (REFERENCE.md section 10 recipe).

Experiment configs start from ``get_config()`` here and override what their thesis table says.
Any field can be overridden on the command line: ``--config.optim.lr=0.02``.
"""
import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  # jax's partitionable threefry compiles ~6 s per random call site on a CPU (one per parameter at
  # init); the classic one compiles in ~1 s and gives sharding-independent values as well.
  c.jax_threefry_partitionable = False
  c.dtype = "float32"  # compute dtype; parameters, BN statistics and the loss stay float32

  c.model = ml_collections.ConfigDict()
  c.model.name = "tsm_resnet"
  c.model.num_classes = 400
  c.model.depth = 50
  c.model.width = 1.0
  c.model.stage_sizes = ()  # () = the standard blocks of `depth`; e.g. (1, 1, 1, 1) for quick tests
  c.model.shift = True
  c.model.dropout = 0.5

  c.data = ml_collections.ConfigDict()
  # synthetic | rawframes | videos | kinetics400 | minikinetics | sthv1 | ucf101 | hmdb51 | tfds
  c.data.dataset = "synthetic"
  c.data.root = ""  # data directory (real datasets)
  c.data.train_list = ""  # list/annotation file of the training split
  c.data.val_list = ""
  # Named benchmarks (input_pipeline/datasets.py): folder of the official annotation files
  # ("" = root/annotations, root, root/..); UCF101/HMDB51 official split 1-3.
  c.data.annotations = ""
  c.data.split_id = 1
  # A dataset written by `python -m input_pipeline.prepare` (TFDS ArrayRecord); read instead of root.
  c.data.prepared = ""
  # Frame file names in frame folders; "" = detect (img_00001.jpg, 00001.jpg, frame000001.jpg, ...).
  c.data.frame_template = ""
  # > 0: raw frames/videos are rescaled to this short side when read, as prepare.py stores them
  # (the reference extracts frames at short side 256, 331 for its Kinetics runs); 0 = as stored.
  c.data.short_side = 0
  c.data.modality = "rgb"  # rgb | flow | rgb+flow (x/y flow JPEGs beside the frames; two-stream TeSNet)
  c.data.flow_template = ""  # flow file names, e.g. "flow_{}_{:05d}.jpg" (axis x/y, pair); "" = detect
  c.data.num_segments = 8  # TSN segments S
  c.data.frames_per_segment = 1  # L consecutive frames per segment (3 for MBPM / BQN)
  c.data.sampling = "segment"  # segment (TSN uniform) | dense
  c.data.dense_stride = 1
  c.data.crop_size = 224
  c.data.scale_size = 256  # short side before the centre crop at validation
  c.data.multi_scale = (1.0, 0.875, 0.75, 0.66)
  c.data.max_distort = 1
  c.data.flip = True  # False for Something-Something (left/right labels)
  # Where the multi-scale crop is resized to crop_size and flipped (PIL's pixels either way):
  # 'step' = in the jitted train step (vidjax/ops/resize.py; the loader only decodes and cuts boxes, sent
  # on a canvas_size^2 array, 0 = max(scale_size, crop_size, short_side)), 'host' = in the loader as the
  # reference, 'auto' = 'step' on GPU/TPU, 'host' on a CPU backend (where XLA's gathers are the slower).
  c.data.crop_resize = "auto"
  c.data.canvas_size = 0
  c.data.mean = (0.485, 0.456, 0.406)
  c.data.std = (0.229, 0.224, 0.225)
  c.data.num_workers = 2
  c.data.prefetch = 2
  c.data.test_crops = 1  # 1 (centre) or 3 (left/centre/right full-height)
  c.data.test_clips = 1  # temporal clips per video at evaluation

  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 0.01  # base lr for the global batch below
  c.optim.batch_size = 64  # global batch (clips)
  c.optim.epochs = 50.0  # float: fractional epochs are fine
  c.optim.warmup_epochs = 0.0  # linear warm-up from lr/10 (REFERENCE.md section 10)
  c.optim.momentum = 0.9
  c.optim.weight_decay = 1e-4
  c.optim.grad_clip = 20.0  # global grad-norm clip (--gd 20); <= 0 disables
  c.optim.grad_accum_steps = 1  # > 1: split each batch into micro-batches, one update (less memory)
  c.optim.label_smoothing = 0.0
  # Parameter groups (REFERENCE.md section 10, TSN column): first match wins.
  # Each rule: "name: regex on the '/'-joined param path | kinds (kernel,bias,bn or *) | lr_mult | wd_mult".
  c.optim.param_groups = (
      "fc_weight: (^|/)fc/kernel$ | kernel | 5 | 1",
      "fc_bias: (^|/)fc/bias$ | bias | 10 | 0",
      "bn: .* | bn | 1 | 0",
      "bias: .* | bias | 2 | 0",
      "weight: .* | * | 1 | 1",
  )
  c.optim.steps_per_epoch = -1  # -1: from the dataset size and batch

  c.train = ml_collections.ConfigDict()
  c.train.total_steps = -1  # -1: epochs x steps_per_epoch
  c.train.log_every = 20
  c.train.checkpoint_every = 500
  c.train.keep_checkpoints = 3
  c.train.eval_every = -1  # steps; -1: only at the end
  c.train.eval_at_end = True
  # Fine-tuning (e.g. Kinetics-400 -> UCF101): start from a vidjax workdir or a PyTorch checkpoint; the
  # classifier 'fc' is re-initialised ("init", as the reference) or kept ("keep"); see train/finetune.py.
  c.train.init_checkpoint = ""
  c.train.init_head = "init"
  c.train.init_source = "auto"
  c.train.partial_bn = False  # TSN partial BN: freeze every BatchNorm but the one partial_bn_keep matches
  c.train.partial_bn_keep = ""
  c.train.remat = False  # recompute residual blocks in the backward pass: activation memory for ~1/3 compute
  # CPU only: the op kinds XLA hands to YNNPACK (vidjax/train/compiler.py; bench/RESULTS.md); '' = XLA's default
  c.train.cpu_library_fusion = "dot,reduce"

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1  # devices on the 'data' axis; -1: all that 'fsdp' leaves
  c.mesh.fsdp = 1  # devices that share (shard) each large parameter (FSDP); 1: replicated parameters
  c.mesh.fsdp_min_size = 2 ** 18  # state arrays with fewer elements stay replicated

  return c
