"""Which frameworks import in an interpreter (a child of `benchmarks/peers.py`).

The spec lists `{framework: [module, ...]}`; each framework's modules are imported in turn and
the framework counts as available when all of them import. Reports package versions, JAX's
backend and, where torch imports, its thread count.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys

from _common import since

DISTRIBUTIONS = ("acjax", "jax", "jaxlib", "flax", "optax", "gymnax", "rejax", "distrax",
                 "stable_baselines3", "sbx-rl", "torch", "gymnasium", "numpy")


def probe(spec: dict, t0: float) -> dict:
    available, errors = {}, {}
    for framework, modules in spec["frameworks"].items():
        try:
            for name in modules:
                importlib.import_module(name)
            available[framework] = True
        except Exception as err:  # noqa: BLE001  (any failure means "not usable here")
            available[framework] = False
            errors[framework] = f"{type(err).__name__}: {err}"[:300]
    versions = {}
    for dist in DISTRIBUTIONS:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    res = dict(framework="probe", workload="probe", python=sys.executable,
               python_version=sys.version.split()[0], available=available, errors=errors,
               versions=versions)
    if "jax" in sys.modules:
        import jax

        res["jax_backend"] = jax.default_backend()
        res["device_kind"] = jax.devices()[0].device_kind
        res["device_count"] = jax.device_count()
    if "torch" in sys.modules:
        res["torch_threads"] = sys.modules["torch"].get_num_threads()
    res["seconds"] = since(t0)
    return res
