"""The run directory: its name, its files (`config.json`, `params.npz`, `summary.json`) and how
they are written (atomically: a process killed mid-write leaves the old file or none).

An existing run directory is never overwritten; `--resume` continues one in place.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import json
import math
import os
import pathlib
import platform
import tempfile
from typing import Any

from acjax.core.config import config_to_dict
from acjax.run.options import RESUME_DEFAULTS
from acjax.run.registry import public_module

__all__ = [
    "atomic_path",
    "check_resumable",
    "default_run_dir",
    "flat_params",
    "json_float",
    "library_versions",
    "params_fingerprint",
    "prepare_run_dir",
    "write_config",
    "write_text_atomic",
]


def library_versions(env: str = "") -> dict[str, str]:
    out = {"python": platform.python_version()}
    names = ["acjax", "jax", "jaxlib", "flax", "optax", "gymnax", "chex", "orbax-checkpoint"]
    if str(env).startswith("brax/"):
        names += ["brax", "mujoco", "mujoco-mjx"]
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def default_run_dir(config) -> pathlib.Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    algo = getattr(config, "algo", "run")
    env = str(config.env).replace("/", "-")  # brax/ant -> brax-ant: one flat folder
    return pathlib.Path("runs") / f"{env}-{algo}-seed{config.seed}-{stamp}"


def prepare_run_dir(run_dir: pathlib.Path) -> pathlib.Path:
    """Creates `run_dir`; refuses one that already holds a run (nothing is ever overwritten)."""
    run_dir = pathlib.Path(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ValueError(
            f"run_dir='{run_dir}' already holds files; pass a new --run-dir (existing runs are "
            "never overwritten)"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def json_float(x: float) -> float | None:
    return None if (x is None or not math.isfinite(x)) else float(x)


def write_config(path, config, configs, sweep_fields, options, grid=None) -> None:
    data = {
        "module": public_module(type(config)),
        "config_type": type(config).__name__,
        "config": config_to_dict(config),
        "num_seeds": options.num_seeds,
        "run": {name: _json_value(getattr(options, name)) for name in RESUME_DEFAULTS},
        "versions": library_versions(config.env),
    }
    if len(configs) > 1:
        data["sweep"] = {
            name: [getattr(c, name) for c in configs] for name in sweep_fields
        }
    if grid:
        data["sweep_grid"] = {name: list(values) for name, values in grid.items()}
    write_text_atomic(path, json.dumps(data, indent=2))


def _json_value(value: Any) -> Any:
    return str(value) if isinstance(value, pathlib.Path) else value


@contextlib.contextmanager
def atomic_path(path: pathlib.Path):
    """Yields a temporary path beside `path`, renamed onto it once the block completes.

    A process killed mid-write leaves the old file (or none), never a half-written one.
    """
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield pathlib.Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: pathlib.Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def check_resumable(run_dir: pathlib.Path) -> None:
    """Raises `ValueError` unless `run_dir` holds a run that `--resume` can continue."""
    run_dir = pathlib.Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise ValueError(
            f"run_dir='{run_dir}' holds no run to resume (no config.json); drop --resume to "
            "start a new run there, or pass the directory of an existing run"
        )
    if (run_dir / "summary.json").exists():
        raise ValueError(
            f"run_dir='{run_dir}' holds a finished run (summary.json); there is nothing to "
            "resume. To train longer, start a new run with a new --run-dir"
        )


def params_fingerprint(params) -> str:
    """SHA-256 over the parameter leaves' bytes in tree order (cheap equality of runs)."""
    import hashlib

    import jax
    import numpy as np

    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(params):
        digest.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    return digest.hexdigest()


def flat_params(params) -> dict[str, Any]:
    import jax
    import numpy as np

    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in flat}
