"""acjax: JAX-native, purely functional, high-throughput actor-critic library and trainer."""

import os as _os

__version__ = "0.1.0"

# XLA's concurrency-optimised CPU scheduler can leave long vmapped training programs stalled
# (all threads idle, no progress). Turn it off unless the user chose otherwise; this must happen
# before JAX initialises its CPU backend, i.e. before the first computation.
_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"
if _FLAG not in _os.environ.get("XLA_FLAGS", ""):
    _os.environ["XLA_FLAGS"] = f"{_os.environ.get('XLA_FLAGS', '')} {_FLAG}=false".strip()

from acjax import backend as _backend  # after the XLA flags above

_backend.apply_defaults()
