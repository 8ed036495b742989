"""Saved training programs: a second run skips Python tracing and lowering as well as XLA.

JAX's persistent compilation cache (`enable_compilation_cache`) stores compiled XLA
executables, but finding one still means tracing the Python training function and lowering it
to StableHLO, which for a PPO run takes about a second on a small CPU (as long as the rest of a
warm start). `compile_train` also stores the lowered program: the first call exports
`trainer.train` with `jax.export` (StableHLO in JAX's versioned serialization format; no
pickle) next to the compilation cache; a later call with the same program loads it, so only
the XLA executable is looked up.

A saved program is found only by a SHA-256 fingerprint of everything that could change it:
the configuration's type and every field, the source files of the `acjax` package, the versions
of JAX, jaxlib and the libraries that build environments, networks and optimizers, the platform
`jax.export` lowers for on the device in use (`lowering_platform`: "cuda" or "rocm" for a
device whose platform reads "gpu") and its device kind, JAX's numerics flags, and acjax's
compile options.

A saved program never breaks a run. A file that cannot be read back, or a program that cannot
be compiled or called here, is replaced by a fresh export; when exporting or saving fails too
(a read-only or unusable folder, a function `jax.export` cannot serialise), the run compiles
the ordinary way (`jax.jit`). Either way one warning line on stderr names the file and the
reason.

    from acjax.run.programs import compile_train, enable_compilation_cache

    enable_compilation_cache()                      # ~/.cache/acjax/jax
    train, info = compile_train(make_train(config), jax.random.PRNGKey(0))
    state, metrics = train(jax.random.PRNGKey(1))   # any key of the same shape
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import pathlib
import sys
import tempfile
from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from acjax.cpu import backend

__all__ = [
    "Loaded",
    "compile_state_program",
    "compile_train",
    "enable_compilation_cache",
    "fingerprint",
    "lowering_platform",
    "program_key",
    "programs_dir",
    "source_digest",
]

FORMAT = "acjax-program-2"
"""Changes whenever what is stored, or how it is keyed, changes."""

LIBRARIES = ("jax", "jaxlib", "flax", "optax", "gymnax", "chex", "numpy", "ml_dtypes", "brax")
"""Installed libraries whose versions enter a program's fingerprint (missing ones as absent)."""

PROGRAMS_DIR = "acjax-programs"
"""Folder of saved programs inside JAX's compilation cache directory."""


class Loaded(NamedTuple):
    """What `compile_train` reports besides the compiled function.

    Attributes:
      path: the saved program's file, or None when no cache directory is configured.
      outcome: "loaded" (found and read back), "saved" (exported now), "unsaved" (exported
        and compiled, but the file could not be written), "failed" (compiled the ordinary way:
        no program could be exported) or "off" (no cache directory).
    """

    path: pathlib.Path | None
    outcome: str


def source_digest() -> str:
    """SHA-256 over the `acjax` package's Python sources (relative paths and contents)."""
    root = pathlib.Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def lowering_platform(device: Any) -> str:
    """The platform name `jax.export` lowers for on `device`.

    A device's `platform` says "gpu" for NVIDIA and AMD GPUs alike, where `jax.export` wants
    "cuda" or "rocm" (it refuses to call a program exported for "gpu" on either): the client's
    platform version tells them apart. Other names ("cpu", "tpu", "cuda", "rocm") are kept.
    """
    platform = str(device.platform).lower()
    if platform != "gpu":
        return platform
    version = str(getattr(getattr(device, "client", None), "platform_version", "")).lower()
    return "rocm" if ("rocm" in version or "hip" in version) else "cuda"


def fingerprint(name: str, config: Any, args: Any, options: dict | None) -> dict[str, Any]:
    """Everything a saved program depends on, as a JSON-able dict (hashed by `program_key`)."""
    device = jax.devices()[0]
    return {
        "format": FORMAT,
        "function": name,
        "config_type": f"{type(config).__module__}.{type(config).__qualname__}",
        "config": repr(config),
        "args": [
            [list(leaf.shape), str(leaf.dtype)] for leaf in jax.tree.leaves(args)
        ],
        "args_tree": str(jax.tree.structure(args)),
        "acjax_sources": source_digest(),
        "versions": _versions(),
        "platform": lowering_platform(device),
        "device_kind": device.device_kind,
        "x64": bool(jax.config.jax_enable_x64),
        "prng_impl": str(jax.config.jax_default_prng_impl),
        "threefry_partitionable": bool(jax.config.jax_threefry_partitionable),
        "rolled_threefry": os.environ.get(backend.ROLLED_THREEFRY_ENV, ""),
        "compiler_options": options or {},
    }


def program_key(print_: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(print_, sort_keys=True).encode()).hexdigest()


def enable_compilation_cache(path: str | os.PathLike | None = None) -> None:
    """Turns on JAX's persistent compilation cache (safe to call more than once): `path`, else
    `ACJAX_CACHE_DIR`, else `~/.cache/acjax/jax`."""
    path = path or os.environ.get("ACJAX_CACHE_DIR") or (
        pathlib.Path.home() / ".cache" / "acjax" / "jax"
    )
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def programs_dir() -> pathlib.Path | None:
    """Where programs are saved: inside JAX's compilation cache directory, if one is set."""
    cache = jax.config.jax_compilation_cache_dir
    return pathlib.Path(cache) / PROGRAMS_DIR if cache else None


def _write_atomically(path: pathlib.Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def warn(message: str) -> None:
    """One warning line on stderr (a saved program that could not be used)."""
    print(f"acjax: warning: {message}", file=sys.stderr, flush=True)


def _reason(err: BaseException) -> str:
    text = " ".join(str(err).split())
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def compile_state_program(
    fun: Callable[..., tuple[Any, dict[str, jax.Array]]],
    args: tuple,
    *,
    state_like: Any,
    name: str,
    config: Any,
    directory: str | os.PathLike | None = None,
    donate_state: bool = False,
) -> tuple[Callable[..., tuple[Any, dict[str, jax.Array]]], Loaded]:
    """Compiles `fun(*args) -> (state, metrics)` through a saved program when there is one.

    Args:
      fun: a pure function returning a state pytree and a dict of arrays (a training run or
        chunk).
      args: example arguments (arrays, or pytrees of them); calls must pass the same shapes.
      state_like: a pytree with the structure of `fun`'s returned state (e.g. the arguments'
        state, or `jax.eval_shape` of an init function); used to rebuild the output of a
        loaded program without tracing `fun`.
      name: what `fun` is within `config`'s family (enters the fingerprint).
      config: the frozen configuration `fun` was built from (its repr enters the fingerprint).
      directory: where programs are saved; default `programs_dir()`. Without either, `fun`
        is compiled the usual way.
      donate_state: donate `args[0]`'s buffers to the call (a state updated in place).

    Returns:
      `(call, info)`: `call(*args) -> (state, metrics)` and where the program is, what became
      of it (`Loaded.outcome`). Nothing that goes wrong with a saved program raises here: the
      run warns in one line and compiles the ordinary way.
    """
    options = backend.compiler_options()
    folder = pathlib.Path(directory) if directory is not None else programs_dir()

    def ordinary():
        donate = (0,) if donate_state else ()
        return jax.jit(fun, compiler_options=options, donate_argnums=donate).lower(*args).compile()

    if folder is None:
        return ordinary(), Loaded(None, "off")
    path: pathlib.Path | None = None
    problems: list[str] = []
    try:
        print_ = fingerprint(name, config, args, options)
        digest = program_key(print_)
        path = folder / f"{digest}.jaxexport"
        meta_path = folder / f"{digest}.json"
        found, problem = _load(path, meta_path, digest)
        if problem:
            problems.append(f"could not be read ({problem})")
        if found is not None:
            try:
                call = _compiled_call(*found, args, state_like, options, donate_state)
                return call, Loaded(path, "loaded")
            except Exception as err:  # noqa: BLE001 - exported elsewhere, another JAX, ...
                problems.append(f"could not be compiled here ({_reason(err)})")
        exported, meta = _export(fun, args, print_, digest)
        call = _compiled_call(exported, meta, args, state_like, options, donate_state)
        try:
            _save(folder, path, meta_path, exported, meta)
        except Exception as err:  # noqa: BLE001 - a read-only or unusable folder
            problems.append(f"could not be written ({_reason(err)})")
            warn(f"saved program {path} {'; '.join(problems)}; this run goes on without it")
            return call, Loaded(path, "unsaved")
        if problems:
            warn(f"saved program {path} {'; '.join(problems)}; exported it again")
        return call, Loaded(path, "saved")
    except Exception as err:  # noqa: BLE001 - a saved program never breaks a run
        problems.append(_reason(err))
    where = path if path is not None else folder
    warn(f"saved program {where} not used ({'; '.join(problems)}); compiling the ordinary way")
    return ordinary(), Loaded(path, "failed")


def _load(path: pathlib.Path, meta_path: pathlib.Path, key: str):
    """`((exported, metadata), None)`, or `(None, reason)`; `(None, None)` when absent."""
    if not path.exists() and not meta_path.exists():
        return None, None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("key") != key:
            return None, f"{meta_path.name} belongs to another program"
        exported = jax.export.deserialize(bytearray(path.read_bytes()))
    except Exception as err:  # noqa: BLE001 - any unreadable file is a miss
        return None, _reason(err)
    if len(exported.out_avals) != meta.get("num_outputs"):
        return None, (f"it returns {len(exported.out_avals)} arrays, its metadata says "
                      f"{meta.get('num_outputs')}")
    return (exported, meta), None


def _export(fun, args, print_: dict[str, Any], digest: str):
    """`(exported, meta)`: `fun` exported for this device's lowering platform."""
    flat_args, in_tree = jax.tree.flatten(args)
    names: list[str] = []

    def flat_fun(*leaves):
        state, metrics = fun(*jax.tree.unflatten(in_tree, leaves))
        names[:] = sorted(metrics)
        return jax.tree.leaves((state, metrics))

    exported = jax.export.export(jax.jit(flat_fun), platforms=(print_["platform"],))(*flat_args)
    meta = {"key": digest, "metric_names": names, "num_outputs": len(exported.out_avals),
            "fingerprint": print_}
    # What a later run loads is the deserialised program: compile that one now, so that both
    # runs find the same entry in JAX's compilation cache.
    return jax.export.deserialize(exported.serialize()), meta


def _save(folder: pathlib.Path, path: pathlib.Path, meta_path: pathlib.Path, exported, meta):
    """Writes the program, then its metadata (a reader checks the metadata's key first)."""
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, bytes(exported.serialize()))
    _write_atomically(meta_path, json.dumps(meta, indent=1).encode())


def _compiled_call(exported, meta, args, state_like, options, donate_state: bool):
    """`call(*args) -> (state, metrics)` of an exported program, compiled for `args`."""
    out_tree = jax.tree.structure((state_like, {n: 0 for n in meta["metric_names"]}))
    if out_tree.num_leaves != meta["num_outputs"]:
        raise ValueError(
            f"the program returns {meta['num_outputs']} arrays but the state and metrics here "
            f"have {out_tree.num_leaves}"
        )
    num_state = len(jax.tree.leaves(args[0])) if donate_state else 0
    compiled = (
        jax.jit(exported.call, compiler_options=options, donate_argnums=tuple(range(num_state)))
        .lower(*jax.tree.leaves(args))
        .compile()
    )

    def call(*call_args):
        return jax.tree.unflatten(out_tree, compiled(*jax.tree.leaves(call_args)))

    return call


def compile_train(
    trainer: Any,
    key: jax.Array,
    *,
    directory: str | os.PathLike | None = None,
) -> tuple[Callable[[jax.Array], tuple[Any, dict[str, jax.Array]]], Loaded]:
    """`trainer.train` compiled for keys like `key`, through a saved program when there is one.

    Args:
      trainer: an algorithm's `Trainer` (`acjax.ppo_a2c.make_train`, `acjax.sac.make_train`,
        `acjax.td3.make_train`, ...): `init(key) -> state`, `train(key) -> (state, metrics)` with
        `metrics` a dict of arrays.
      key: an example PRNG key (its shape and dtype are what the program takes).
      directory: where programs are saved; default `programs_dir()` (inside JAX's compilation
        cache directory). Without either, the program is compiled the usual way.

    Returns:
      `(train, info)`: `train(key) -> (state, metrics)` runs the compiled whole run (the
      default hyperparameters of `trainer.config`), `info` says where the program is and
      whether it was loaded or saved now.
    """
    return compile_state_program(
        trainer.train, (key,),
        state_like=jax.eval_shape(trainer.init, key),
        name="train", config=trainer.config, directory=directory,
    )
