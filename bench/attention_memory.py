"""RNL attention at res3 size: dense vs memory-efficient (chunked) path, time and peak memory.

The Gaussian RNL of a res3 block (thesis Eq. 4.9) at 8 x 28 x 28 positions (L = 6,272) with C' = 256:
``y = softmax(P P^T) theta`` for one clip, P and theta ``(1, 6272, 256)`` float32. Both paths run in this
one process, jitted, forward and forward + backward (gradients w.r.t. P and theta, P used as query
and key as in RNL):

* ``dense``: the reference's full ``6272 x 6272`` weight matrix (157 MB per clip);
* ``chunked``: ``vidjax.ops.attention.chunked_attention``, blocks of at most ``--chunk`` queries
  (default 1024 -> 7 blocks of 896), recomputed in the backward pass.

Memory columns: ``XLA temp`` is the scratch space XLA's buffer assignment plans for the compiled
program (``compiled.memory_analysis().temp_size_in_bytes``); the CPU backend may run a whole fused
``dot -> softmax -> dot`` inside one kernel whose internal buffer it does not report (then the dense
forward shows ~0). ``peak RSS +`` is the growth of the process' resident-set high-water mark during
one call (``VmHWM`` after resetting it through ``/proc/self/clear_refs``; Linux only), which does see
those buffers; it is noisy (allocator caching), so the chunked path is measured first.
``largest block`` is the size of the weight matrix each path holds at a time.

    python bench/attention_memory.py [--chunk 1024] [--repeats 3] [--write]

``--write`` puts the table into bench/RESULTS.md under '## RNL attention: dense vs memory-efficient'
(created if missing; only that section is replaced or appended).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.results_io import RESULTS, proc_status as _status, reset_peak as _reset_peak, write_section  # noqa: E402
from vidjax.ops import attention as ops  # noqa: E402

HEADING = "## RNL attention: dense vs memory-efficient"


def measure(fn, args, repeats: int):
  compiled = jax.jit(fn).lower(*args).compile()
  temp = compiled.memory_analysis().temp_size_in_bytes
  jax.block_until_ready(compiled(*args))  # warm-up
  times, peaks = [], []
  for _ in range(repeats):
    ok = _reset_peak()
    before = _status("VmRSS")
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - t0)
    peaks.append(_status("VmHWM") - before if ok else float("nan"))
  return {"time": float(np.median(times)), "temp": temp, "rss": float(np.max(peaks))}


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--chunk", type=int, default=1024)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--write", action="store_true")
  args = ap.parse_args()

  t, h, w, d = 8, 28, 28, 256
  length = t * h * w
  k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
  # P at the scale of a trained block (unit-variance logits would be a near one-hot softmax either way)
  p = jax.random.normal(k1, (1, length, d), jnp.float32) * (1.0 / np.sqrt(d))
  v = jax.random.normal(k2, (1, length, d), jnp.float32)
  ct = jax.random.normal(k3, (1, length, d), jnp.float32)

  def forward(impl):
    return lambda p, v: ops.attention(p, p, v, "gaussian", impl, args.chunk)

  def fwd_bwd(impl):
    def f(p, v):
      out, vjp = jax.vjp(forward(impl), p, v)
      return out, vjp(ct)
    return f

  num, chunk = ops.chunk_layout(length, args.chunk)
  largest = {"chunked": chunk * length * 4, "dense": length * length * 4}
  rows = []
  results = {}
  for impl in ("chunked", "dense"):  # chunked first: the allocator then has not cached dense's buffers
    for mode, make in (("forward", forward), ("forward+backward", fwd_bwd)):
      r = measure(make(impl), (p, v), args.repeats)
      results[(impl, mode)] = r
      rows.append((impl, mode, r))
      print(f"{impl:8s} {mode:17s} {r['time']*1e3:9.1f} ms  XLA temp {r['temp']/2**20:8.1f} MiB  "
            f"peak RSS + {r['rss']/2**20:8.1f} MiB", flush=True)
  out_d = jax.jit(forward("dense"))(p, v)
  out_c = jax.jit(forward("chunked"))(p, v)
  maxdiff = float(jnp.max(jnp.abs(out_d - out_c)))
  print(f"max |dense - chunked| = {maxdiff:.2e}")

  cmd = "python bench/attention_memory.py " + " ".join(
      a for a in [f"--chunk {args.chunk}" if args.chunk != 1024 else "",
                  f"--repeats {args.repeats}" if args.repeats != 3 else "", "--write" if args.write else ""] if a)
  try:
    load = "load average %.1f / %.1f / %.1f" % os.getloadavg()
  except OSError:
    load = "load average n/a"
  lines = [
      HEADING, "",
      f"Gaussian RNL attention of one res3 block, one clip: L = 8x28x28 = {length} positions, C' = {d}, "
      f"float32, `y = softmax(P P^T) theta` (P as query and key); chunked = {num} blocks of {chunk} queries.",
      "",
      f"Machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), shared with other "
      f"jobs ({load} at the end of the run), jax {jax.__version__} CPU. Command: `{cmd.strip()}`.",
      "",
      "| path | pass | time (median of %d) | XLA temp | peak RSS growth | largest weight block |" % args.repeats,
      "| --- | --- | ---: | ---: | ---: | ---: |",
  ]
  for impl, mode, r in rows:
    lines.append(f"| {impl} | {mode} | {r['time']*1e3:.0f} ms | {r['temp']/2**20:.1f} MiB | "
                 f"{r['rss']/2**20:.0f} MiB | {largest[impl]/2**20:.1f} MiB |")
  lines += [
      "",
      f"Outputs agree: max |dense - chunked| = {maxdiff:.1e}. XLA temp is the planned scratch memory; the CPU "
      "backend runs the dense forward `dot -> softmax -> dot` as one fusion whose 157 MB matrix it does "
      "not list there (hence ~0), while the RSS growth sees it. In training (forward + backward) the dense "
      "path keeps the softmax matrix for the backward pass; the chunked path recomputes each block.",
      "",
  ]
  text = "\n".join(lines)
  print(text)
  if args.write:
    write_section(HEADING, text)
    print(f"written to {RESULTS}")


if __name__ == "__main__":
  main()
