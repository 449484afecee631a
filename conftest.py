"""pytest setup: the repository root is on sys.path (this file's folder), and compiled XLA programs
are cached on disk so that the end-to-end tests, which build the same tiny model several times,
compile it once."""
import os
import tempfile

import jax

jax.config.update("jax_compilation_cache_dir",
                  os.environ.get("VIDJAX_TEST_JAX_CACHE", os.path.join(tempfile.gettempdir(), "vidjax-jax-cache")))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_threefry_partitionable", False)  # as configs/default.py: fast compiles on a CPU
