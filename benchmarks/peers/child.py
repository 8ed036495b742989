"""One measurement of `benchmarks/peers.py`, in a fresh interpreter.

    python benchmarks/peers/child.py '{"runner": "acjax_ppo:train_single", ...}'

The argument is a JSON object naming the runner (`module:function` in this folder) and its
workload; the runner gets it and `T0`, the `time.perf_counter()` taken as this file's first
statement, so its time to result counts everything after the interpreter's own start-up
(importing the library stack included; the parent's `process_wall_seconds` also counts the
start-up and exit). It prints its result as one JSON line (see `_common.emit`).
"""

import time

T0 = time.perf_counter()  # every child's clock starts here, before any other import

import importlib
import importlib.util
import json
import pathlib
import sys


def _start_backend(threads: int) -> None:
    """Starts JAX's CPU client with `threads` execution threads (acjax.cpu.backend's way), for
    any framework: acjax/cpu/backend.py is loaded by path, so peers' interpreters need no
    acjax."""
    path = pathlib.Path(__file__).resolve().parents[2] / "acjax" / "cpu" / "backend.py"
    spec = importlib.util.spec_from_file_location("_acjax_backend", path)
    backend = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(backend)
    backend.start_cpu_backend(threads)


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: child.py SPEC_JSON")
    spec = json.loads(sys.argv[1])
    here = str(pathlib.Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    import _common

    if spec.get("exec_threads"):
        _start_backend(int(spec["exec_threads"]))
    module_name, function_name = spec["runner"].split(":")
    runner = getattr(importlib.import_module(module_name), function_name)
    _common.emit(runner(spec, T0))


if __name__ == "__main__":
    main()
