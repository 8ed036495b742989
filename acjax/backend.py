"""Backend settings acjax applies for speed; none of them changes a computed value.

* Threefry on CPU: JAX lowers the threefry2x32 hash (behind every `jax.random` call) on CPU as a
  rolled five-iteration loop, which keeps compiled programs small but makes each call a small
  XLA while loop that runs op by op. In an RL rollout, where several such calls sit inside
  every step of a `lax.scan`, that loop overhead was half of the rollout's time on a 2-core
  CPU. `unroll_cpu_threefry()` registers the straight-line lowering that JAX uses on other
  platforms, which XLA fuses into one kernel. Both lowerings compute the same 20 threefry
  rounds, so random numbers are bit-identical (tested); only speed and code size differ.
  acjax applies it on import; set `ACJAX_ROLLED_THREEFRY=1` in the environment to keep JAX's
  default.
"""

from __future__ import annotations

import os

ROLLED_THREEFRY_ENV = "ACJAX_ROLLED_THREEFRY"


def unroll_cpu_threefry(unrolled: bool = True) -> bool:
    """Chooses the CPU lowering of threefry2x32: straight-line (True) or JAX's rolled loop.

    Affects functions lowered after the call (already compiled programs keep theirs). Returns
    False, changing nothing, when this JAX version does not expose the two lowerings.
    """
    try:
        from jax._src.random import threefry2x32 as threefry
        from jax.interpreters import mlir

        rule = (
            threefry._threefry2x32_lowering_rule
            if unrolled
            else threefry._threefry2x32_cpu_lowering_rule
        )
        mlir.register_lowering(threefry.threefry2x32_p, rule, platform="cpu")
    except (ImportError, AttributeError):  # pragma: no cover - other JAX versions
        return False
    return True


def apply_defaults() -> None:
    """Applies the settings above unless the environment opts out."""
    if os.environ.get(ROLLED_THREEFRY_ENV, "") not in ("1", "true", "True"):
        unroll_cpu_threefry(True)
