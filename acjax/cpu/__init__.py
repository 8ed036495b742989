"""Opt-in speed settings for JAX's CPU backend; importing this package changes nothing.

`apply()` turns on what the command lines use on every backend before JAX starts: XLA's
concurrency-optimised CPU scheduler off (it can stall long vmapped programs) and the
straight-line threefry lowering (`acjax.cpu.backend`). The rest is chosen per run by the command
lines: XLA's fast-compile preset (`backend.compiler_options`, `backend.jit`), the execution
pool and the host device split (`acjax.cpu.host`, sized by `acjax.cpu.sizing`), and the dense
layer with a faster CPU gradient (`acjax.cpu.dense`). Numbers are unchanged by all of them but
the lone-agent device split, which changes them in the last bits.

Only the run layer (`acjax.run`) and the benchmarks import this package; the library's pure
functions never do.
"""

from __future__ import annotations

import os

__all__ = ["SCHEDULER_FLAG", "apply"]

SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"


def apply() -> dict[str, bool]:
    """Applies the CPU settings every acjax command line starts with.

    * `XLA_FLAGS` gains `--xla_cpu_enable_concurrency_optimized_scheduler=false` unless it sets
      that flag already (it takes effect only if JAX's backend has not started yet);
    * JAX's CPU lowering of threefry2x32 becomes the straight-line one (same random numbers,
      faster), unless `ACJAX_ROLLED_THREEFRY=1` is set or this JAX version lacks the private
      names it needs (then nothing changes).

    Returns:
      `{"scheduler_flag": whether XLA_FLAGS was changed, "threefry": whether the straight-line
      lowering is registered}`.
    """
    from acjax.cpu import backend

    flags = os.environ.get("XLA_FLAGS", "")
    changed = SCHEDULER_FLAG not in flags
    if changed:
        os.environ["XLA_FLAGS"] = f"{flags} {SCHEDULER_FLAG}=false".strip()
    return {"scheduler_flag": changed, "threefry": backend.apply_threefry_default()}
