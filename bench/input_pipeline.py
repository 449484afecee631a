"""Input pipeline throughput: clips/s of the raw-layout readers and of the prepared TFDS reader.

One process, the same files, side by side (issue 6, point 8):

* ``plain``: the loop a PyTorch TSN loader runs per clip (the reference's ``ops/dataset.py`` +
  ``ops/transforms.py``): PIL-open every sampled frame (for mp4: decode the whole video with PyAV and
  convert every frame to PIL), ``GroupMultiScaleCrop`` (PIL crop + bilinear resize of each frame),
  flip, ``Stack``; reported without and with the float conversion + mean/std normalisation that the
  reference does on the CPU (``ToTorchFormatTensor`` + ``GroupNormalize``) and vidjax does on the device.
* ``vidjax``: ``input_pipeline.pipeline.train_example`` (sampling, decoding only the sampled frames, and
  of a JPEG frame only its crop box, the same multi-scale crop, uint8 out) on the rawframes folders, the
  mp4 files, and the TFDS ArrayRecord dataset that ``input_pipeline.prepare`` made from the frame folders.

Each reader is timed on ``--clips`` clips in one worker (this thread), best of ``--rounds`` interleaved
rounds, in wall time and in the process' CPU time (per core: PyAV's decoder runs threads of its own,
so one worker can use more than one core); then with ``--threads`` threads (``pipeline.train_batches`` with ``data.num_workers`` threads for
vidjax, a thread pool for the plain loop). The data are SyntheticMotion clips stored as 256 x 340 JPEG
frames (quality 90) and H.264 mp4 (crf 12), generated once into ``--data``.

    python bench/input_pipeline.py [--config configs/bqn_ssv1.py] [--clips 24] [--threads 2] [--write]

``--write`` puts the table into bench/RESULTS.md under '## Input pipeline' (only that section).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.results_io import write_section  # noqa: E402
from input_pipeline import pipeline, sampling, transforms  # noqa: E402

SECTION = "## Input pipeline"


def load_config(path: str, arg: str = ""):
  import importlib.util
  spec = importlib.util.spec_from_file_location("bench_config", path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config(arg) if arg else mod.get_config()


def make_data(args):
  """Frame folders, mp4 files and the prepared TFDS dataset (kept in ``args.data`` for reruns)."""
  from input_pipeline import prepare
  from input_pipeline.sources.synthetic import SyntheticMotion, write_rawframes, write_videos
  h, w = args.height, args.width
  src = SyntheticMotion(num_videos=args.videos, num_frames=args.num_frames, height=h, width=w)
  root = args.data
  frames_list, videos_list = os.path.join(root, "frames.txt"), os.path.join(root, "videos.txt")
  if not os.path.isfile(frames_list):
    t = time.time()
    write_rawframes(src, os.path.join(root, "frames"), frames_list + ".tmp", quality=90)
    os.replace(frames_list + ".tmp", frames_list)
    print(f"wrote {args.videos} frame folders in {time.time() - t:.0f}s", file=sys.stderr)
  if not os.path.isfile(videos_list):
    write_videos(src, os.path.join(root, "videos"), videos_list + ".tmp")
    os.replace(videos_list + ".tmp", videos_list)
  prepared = os.path.join(root, "prepared")
  if not os.path.isfile(os.path.join(prepared, "dataset_info.json")):
    from input_pipeline.sources.synthetic import CLASS_NAMES
    names = os.path.join(root, "class_names.txt")
    with open(names, "w") as fh:
      fh.write("\n".join(CLASS_NAMES) + "\n")
    prepare.main(["rawframes", f"--source={os.path.join(root, 'frames')}", f"--train_list={frames_list}",
                  f"--class_names={names}", f"--out={prepared}", "--splits=train", "--short_side=0", "--workers=1", "--quiet"])
  return frames_list, videos_list, prepared


# ------------------------------------------------------------------------------------------ plain loop
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def plain_transform(imgs, config, rng, normalise: bool):
  """GroupMultiScaleCrop -> GroupRandomHorizontalFlip -> Stack (-> ToTorchFormatTensor + GroupNormalize)."""
  from PIL import Image
  d = config.data
  x, y, cw, ch = transforms.multi_scale_crop_box(imgs[0].size[0], imgs[0].size[1], d.crop_size, rng,
                                                 tuple(d.multi_scale), d.max_distort)
  out = [im.crop((x, y, x + cw, y + ch)).resize((d.crop_size, d.crop_size), Image.BILINEAR) for im in imgs]
  if d.flip and rng.random() < 0.5:
    out = [im.transpose(Image.FLIP_LEFT_RIGHT) for im in out]
  arr = np.stack([np.asarray(im) for im in out])
  if normalise:
    arr = (arr.astype(np.float32) / 255.0 - MEAN) / STD
  return arr


def plain_frames_clip(rows, root, config, i, rng, normalise):
  from PIL import Image
  d = config.data
  path, n = rows[i][0], int(rows[i][1])
  idx = sampling.clip_indices(n, d.num_segments, d.frames_per_segment, d.sampling, rng)
  imgs = [Image.open(os.path.join(root, path, f"img_{k + 1:05d}.jpg")).convert("RGB") for k in idx]
  return plain_transform(imgs, config, rng, normalise)


def plain_video_clip(rows, root, config, i, rng, normalise):
  import av
  d = config.data
  with av.open(os.path.join(root, rows[i][0])) as c:
    imgs = [f.to_image() for f in c.decode(video=0)]  # a VideoReader: every frame to PIL
  idx = sampling.clip_indices(len(imgs), d.num_segments, d.frames_per_segment, d.sampling, rng)
  return plain_transform([imgs[k] for k in idx], config, rng, normalise)


def decode_frames_clip(rows, root, config, i, rng):
  """Only the JPEG decodes of the plain loop's clip (full frames, PIL): the floor of any loader that
  decodes every sampled frame whole."""
  from PIL import Image
  d = config.data
  path, n = rows[i][0], int(rows[i][1])
  for k in sampling.clip_indices(n, d.num_segments, d.frames_per_segment, d.sampling, rng):
    with Image.open(os.path.join(root, path, f"img_{k + 1:05d}.jpg")) as im:
      im.load()


def decode_video_clip(rows, root, config, i, rng):
  """Only the H.264 decoding up to the clip's last sampled frame (PyAV, no conversion to RGB)."""
  import av
  d = config.data
  with av.open(os.path.join(root, rows[i][0])) as c:
    n = c.streams.video[0].frames
    last = int(max(sampling.clip_indices(n, d.num_segments, d.frames_per_segment, d.sampling, rng)))
    for j, _ in enumerate(c.decode(video=0)):
      if j >= last:
        break


def decode_video_needed_clip(rows, root, config, i, rng):
  """Only the H.264 decoding vidjax's reader does for the clip: every frame up to the last sampled one
  except the non-reference frames the clip does not sample, which the decoder drops (no RGB)."""
  from input_pipeline.sources import videos
  d = config.data
  container, stream = videos._open(os.path.join(root, rows[i][0]))
  with container:
    idx = sampling.clip_indices(stream.frames, d.num_segments, d.frames_per_segment, d.sampling, rng)
    need = set(int(k) for k in idx)
    videos._decode_needed(container, stream, videos._pts_to_index(stream), need, max(need), lambda f: None,
                          videos._Decoded())


# -------------------------------------------------------------------------------------------- timing
def time_one_worker(fn, n_videos: int, clips: int) -> tuple[float, float]:
  """Seconds per clip for ``clips`` clips read in this thread: ``(wall, CPU)``, CPU being the process'
  CPU time (every thread's: PyAV's H.264 decoder runs threads of its own)."""
  t, c = time.perf_counter(), time.process_time()
  for j in range(clips):
    fn(j % n_videos, np.random.default_rng([7, j]))
  return (time.perf_counter() - t) / clips, (time.process_time() - c) / clips


def time_threads(fn, n_videos: int, clips: int, threads: int) -> float:
  with concurrent.futures.ThreadPoolExecutor(threads) as pool:
    list(pool.map(lambda j: fn(j % n_videos, np.random.default_rng([7, j])), range(threads)))  # warm
    t = time.perf_counter()
    list(pool.map(lambda j: fn(j % n_videos, np.random.default_rng([7, j])), range(clips)))
  return (time.perf_counter() - t) / clips


def time_pipeline(config, source, clips: int, threads: int) -> float:
  """Seconds per clip through ``pipeline.train_batches`` (grain, ``threads`` reading threads)."""
  c = config.copy_and_resolve_references()
  c.data.num_workers = threads
  c.data.prefetch = 2 * threads
  c.optim.batch_size = 2 * threads
  steps = max(2, -(-clips // c.optim.batch_size)) + 1
  it = pipeline.train_batches(c, source, 0, steps)
  next(it)  # start-up: threads, first batch
  t = time.perf_counter()
  n = 0
  for b in it:
    n += len(b["label"])
  return (time.perf_counter() - t) / n


def run(args):
  config = load_config(args.config, args.config_arg)
  config.model.num_classes = 8
  d = config.data
  d.root, d.annotations, d.prepared, d.short_side = args.data, "", "", 0
  frames_list, videos_list, prepared = make_data(args)
  rows_f = [l.split() for l in open(frames_list)]
  rows_v = [l.split() for l in open(videos_list)]

  def cfg(dataset, root, lst="", prep="", on_device=True):
    c = config.copy_and_resolve_references()
    c.data.dataset, c.data.root, c.data.train_list, c.data.prepared = dataset, root, lst, prep
    c.data.crop_resize = "step" if on_device else "host"
    return c

  root_f, root_v = os.path.join(args.data, "frames"), os.path.join(args.data, "videos")
  n = args.videos
  readers = []

  def add_vidjax(files, dataset, root, lst="", prep=""):
    for on_device, who in ((True, VIDJAX_STEP), (False, VIDJAX_HOST)):
      c = cfg(dataset, root, lst, prep, on_device)
      src = pipeline.build_source(c, "train")
      readers.append((who, files, lambda i, r, c=c, src=src: pipeline.train_example(src, c, i, r), (c, src)))

  readers.append(("plain", "frame folders", lambda i, r: plain_frames_clip(rows_f, root_f, config, i, r, False), None))
  readers.append(("plain + CPU normalise", "frame folders",
                  lambda i, r: plain_frames_clip(rows_f, root_f, config, i, r, True), None))
  add_vidjax("frame folders", "rawframes", root_f, frames_list)
  readers.append((DECODE_ONLY, "frame folders", lambda i, r: decode_frames_clip(rows_f, root_f, config, i, r), None))
  add_vidjax("prepared TFDS (ArrayRecord)", "tfds", prepared, prep=prepared)
  readers.append(("plain", "mp4 files", lambda i, r: plain_video_clip(rows_v, root_v, config, i, r, False), None))
  readers.append(("plain + CPU normalise", "mp4 files",
                  lambda i, r: plain_video_clip(rows_v, root_v, config, i, r, True), None))
  add_vidjax("mp4 files", "videos", root_v, videos_list)
  readers.append((DECODE_ONLY, "mp4 files", lambda i, r: decode_video_clip(rows_v, root_v, config, i, r), None))
  readers.append((DECODE_NEEDED, "mp4 files", lambda i, r: decode_video_needed_clip(rows_v, root_v, config, i, r),
                  None))
  for _, _, fn, _ in readers:  # warm caches (file system, imports)
    fn(0, np.random.default_rng(0))
  one = {k: float("inf") for k in range(len(readers))}
  cpu = dict(one)
  for _ in range(args.rounds):
    for k, (_, _, fn, _) in enumerate(readers):
      wall, used = time_one_worker(fn, n, args.clips)
      one[k], cpu[k] = min(one[k], wall), min(cpu[k], used)
  many = {}
  if args.threads > 1:
    for k, (_, _, fn, pipe) in enumerate(readers):
      many[k] = (time_pipeline(pipe[0], pipe[1], 2 * args.clips, args.threads) if pipe
                 else time_threads(fn, n, 2 * args.clips, args.threads))
  shape = f"{d.num_segments} x {d.frames_per_segment} frames ({d.sampling}), crop {d.crop_size}^2"
  return readers, one, cpu, many, shape, step_resize_ms(config, args)


def step_resize_ms(config, args, batch: int = 4, repeats: int = 5) -> float:
  """Milliseconds per clip of the step's half (``vidjax.ops.resize.crop_resize_flip``, jitted) on this
  machine's CPU, boxes drawn as the multi-scale crop draws them from frames of the benchmark's size."""
  import jax
  from vidjax.ops.resize import crop_resize_flip
  d = config.data
  canvas = pipeline.canvas_size(cfg_on(config))
  f = d.num_segments * d.frames_per_segment
  rng = np.random.default_rng(0)
  video = rng.integers(0, 256, (batch, f, canvas, canvas, 3), dtype=np.uint8)
  boxes = np.array([transforms.multi_scale_crop_box(args.width, args.height, d.crop_size, rng, tuple(d.multi_scale),
                                                    d.max_distort)[:1:-1] for _ in range(batch)], np.int32)
  flips = np.arange(batch) % 2
  fn = jax.jit(lambda v, b, fl: crop_resize_flip(v, b, fl, d.crop_size))
  fn(video, boxes, flips).block_until_ready()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn(video, boxes, flips).block_until_ready()
    times.append(time.perf_counter() - t)
  return 1000 * float(np.median(times)) / batch


def cfg_on(config):
  c = config.copy_and_resolve_references()
  c.data.crop_resize = "step"
  return c


def cpu_share(readers, one, cpu, files: str) -> float:
  """Cores the plain loop used in one worker on ``files`` (CPU time over wall time)."""
  k = next(k for k, (who, f, _, _) in enumerate(readers) if who == "plain" and f == files)
  return cpu[k] / one[k]


VIDJAX_STEP = "vidjax, resize in the step"
VIDJAX_HOST = "vidjax, resize on the host"
DECODE_ONLY = "decode only (no loader)"
DECODE_NEEDED = "decode only, the frames vidjax decodes"


def table(args, readers, one, cpu, many, shape, step_ms) -> str:
  base, base_cpu, base_many = {}, {}, {}
  for k, (who, files, _, _) in enumerate(readers):
    if who == "plain":
      base[files], base_cpu[files], base_many[files] = one[k], cpu[k], many.get(k)
  load = os.getloadavg() if hasattr(os, "getloadavg") else (0, 0, 0)
  lines = [
      SECTION, "",
      f"Clips of {shape} from {args.videos} videos of {args.num_frames} frames at {args.height} x "
      f"{args.width} (SyntheticMotion; JPEG q90 frame folders, H.264 crf 12 mp4, and the TFDS ArrayRecord "
      f"dataset `input_pipeline.prepare` made from the frame folders), config `{args.config}`.", "",
      f"Machine: {os.cpu_count()} CPU cores ({platform.machine()}), shared with other jobs (load average "
      f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end of the run), Python {platform.python_version()}. "
      f"Command: `python bench/input_pipeline.py --config {args.config} --clips {args.clips} --rounds "
      f"{args.rounds} --threads {args.threads} --write`. One worker: best of {args.rounds} interleaved rounds of {args.clips} clips in "
      f"one thread; {args.threads} threads: {2 * args.clips} clips (vidjax through `pipeline.train_batches`).", "",
      f"| reader | files | ms / clip (1 worker) | CPU ms / clip (1 worker) | clips/s (1 worker) | x plain (1 worker) "
      f"| x plain (CPU time: per core) | clips/s ({args.threads} threads) | x plain ({args.threads} threads) |",
      "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ]
  for k, (who, files, _, _) in enumerate(readers):
    ref = files if files in base else "frame folders"
    thr = f"{1.0 / many[k]:.1f}" if k in many else "-"
    thr_x = f"{base_many[ref] / many[k]:.2f}" if k in many and base_many.get(ref) else "-"
    lines.append(f"| {who} | {files} | {1000 * one[k]:.1f} | {1000 * cpu[k]:.1f} | {1.0 / one[k]:.1f} | "
                 f"{base[ref] / one[k]:.2f} | {base_cpu[ref] / cpu[k]:.2f} | {thr} | {thr_x} |")
  lines += ["", "`plain` is the reference loader's per-clip work up to the uint8 stack; `plain + CPU normalise` adds "
            "its float conversion and mean/std normalisation, which vidjax does on the accelerator. The `x plain` "
            "columns compare with the uint8 `plain` loop on the same files (the prepared dataset with the frame "
            "folders' loop). Per core is the CPU time a clip costs (all of the process' threads): one worker is "
            "not one core on mp4, where PyAV's H.264 decoder runs its own threads in both loops (one worker used "
            f"{cpu_share(readers, one, cpu, 'mp4 files'):.1f} cores on mp4 in this run, 1.0 on JPEG).", ""]
  full = {files: cpu[k] for k, (who, files, _, _) in enumerate(readers) if who == "plain + CPU normalise"}
  for k, (who, files, _, _) in enumerate(readers):
    if who.startswith("vidjax"):
      ref = "frame folders" if files not in base else files
      x1, x2, x_wall = base_cpu[ref] / cpu[k], full[ref] / cpu[k], base[ref] / one[k]
      x_thr = f", {base_many[ref] / many[k]:.2f}x with {args.threads} threads" if k in many else ""
      lines.append(f"- {who} on {files}: per core (CPU time) {x1:.2f}x the uint8 plain loop and {x2:.2f}x the "
                   f"reference's loop with CPU normalisation ({x_wall:.2f}x in one worker's wall time{x_thr}); "
                   f"the issue's goal (2x per core) is "
                   f"{'met' if x1 >= 2 else 'met only against the normalising loop' if x2 >= 2 else 'not met'}.")
  t = {(who, files): one[k] for k, (who, files, _, _) in enumerate(readers)}
  share = {files: 1 - t[(VIDJAX_STEP, files)] / t[(VIDJAX_HOST, files)] for files in ("frame folders", "prepared TFDS (ArrayRecord)")}
  lines += ["", f"`{VIDJAX_STEP}` (`data.crop_resize='step'`, the default on GPU/TPU): the loader decodes and cuts the multi-scale "
            "box out of each frame, and the jitted train step resizes and flips it (`vidjax/ops/resize.py`, the "
            "same pixels as PIL, bit for bit; `tests/test_device_resize.py`). On an accelerator that work is "
            f"negligible; on this CPU it would cost {step_ms:.1f} ms per clip inside the step (`crop_resize_flip` "
            f"jitted, batch of 4, {shape}: XLA:CPU's gathers), more than PIL, which is why `crop_resize='auto'` (the "
            f"default) keeps it in the loader on a CPU backend. `{VIDJAX_HOST}` (`crop_resize='host'`, what 'auto' "
            "picks on CPU) does the resize in the loader, as the reference does.", "",
            "Where the time goes (1 worker): for JPEG frames the plain loop decodes each sampled frame whole "
            "(Pillow) and resizes the crop; vidjax decodes only the crop box (`input_pipeline/jpeg.py`: "
            "libjpeg-turbo's partial decompression, the same pixels as Pillow's full decode, bit for bit; "
            "`tests/test_jpeg_box.py`) and, with the resize in the step, does nothing else per frame. The resize "
            f"(with the flip and the copies around it) was {100 * share['frame folders']:.0f} % of vidjax's loader "
            f"time on frame folders and {100 * share['prepared TFDS (ArrayRecord)']:.0f} % on the prepared records "
            "in this run. For mp4 vidjax decodes only up to the last sampled frame, lets the decoder drop the "
            "non-reference frames it does not sample, and converts only the sampled frames to RGB; H.264 "
            "decoding dominates both loops."]
  tc = {(who, files): cpu[k] for k, (who, files, _, _) in enumerate(readers)}
  floor = {files: tc[(DECODE_ONLY, files)] for files in ("frame folders", "mp4 files")}
  need = tc[(DECODE_NEEDED, "mp4 files")]
  plain = base_cpu
  lines += ["", f"`{DECODE_ONLY}`: the decoding a loader that decodes whole frames has to do for the clip, timed "
            "like the readers: Pillow's full decode of the clip's sampled JPEG frames (no crop, resize or "
            "array), and PyAV's H.264 decoding of every frame up to the last sampled one (no RGB conversion). "
            f"`{DECODE_NEEDED}`: the H.264 decoding vidjax's mp4 reader cannot avoid, the same without the "
            "non-reference frames the clip does not sample (no RGB conversion). In CPU time, 2x the plain loop "
            f"per core means at most {500 * plain['frame folders']:.1f} ms per clip on frame folders and "
            f"{500 * plain['mp4 files']:.1f} ms on mp4. Whole JPEG frames take {1000 * floor['frame folders']:.1f} "
            f"ms ({100 * floor['frame folders'] / plain['frame folders']:.0f} % of the plain loop), which is why "
            "vidjax decodes only the boxes. On mp4 the frames up to the last sampled one take "
            f"{1000 * floor['mp4 files']:.1f} ms ({100 * floor['mp4 files'] / plain['mp4 files']:.0f} %) and those "
            f"vidjax decodes {1000 * need:.1f} ms ({100 * need / plain['mp4 files']:.0f} %): an H.264 frame cannot "
            "be decoded without the reference frames before it and no decoder gives a region of one, so no "
            f"reader returning the decoder's own pixels can be more than {plain['mp4 files'] / need:.2f}x the plain "
            f"loop per core on these files (vidjax's: {plain['mp4 files'] / tc[(VIDJAX_STEP, 'mp4 files')]:.2f}x)."]
  return "\n".join(lines) + "\n"


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--config", default="configs/bqn_ssv1.py")
  p.add_argument("--config_arg", default="")
  p.add_argument("--videos", type=int, default=12)
  p.add_argument("--num_frames", type=int, default=64)
  p.add_argument("--height", type=int, default=256)
  p.add_argument("--width", type=int, default=340)
  p.add_argument("--clips", type=int, default=24)
  p.add_argument("--rounds", type=int, default=4)
  p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
  p.add_argument("--data", default="")
  p.add_argument("--write", action="store_true")
  args = p.parse_args()
  args.data = args.data or os.path.join("/tmp", f"vidjax-bench-input-{args.height}x{args.width}x{args.num_frames}-{args.videos}")
  os.makedirs(args.data, exist_ok=True)
  text = table(args, *run(args))
  print(text)
  if args.write:
    write_section(SECTION, text)


if __name__ == "__main__":
  main()
