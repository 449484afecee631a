"""What the scripts under bench/ share: the RESULTS.md section writer and /proc/self readings (Linux)."""
from __future__ import annotations

import os
import re

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")


def write_section(heading: str, text: str, path: str = RESULTS) -> None:
  """Puts ``text`` (starting with ``heading``) into ``path`` in place of that section, or at the end."""
  old = open(path).read() if os.path.isfile(path) else "# vidjax benchmark results\n"
  body = text.rstrip("\n")
  pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
  if pattern.search(old):
    new = pattern.sub(lambda m: body + ("\n" if m.end() == len(old) else "\n\n"), old)
  else:
    new = old.rstrip("\n") + "\n\n" + body + "\n"
  with open(path, "w") as fh:
    fh.write(new)


def proc_status(key: str) -> int:
  """``/proc/self/status`` field in bytes (-1 where unavailable)."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith(key + ":"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return -1


def reset_peak() -> bool:
  """Resets the resident-set high-water mark (VmHWM) to the current RSS (Linux >= 4.0)."""
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False
