"""Shared test configuration: strict numerics, no implicit rank promotion.

The suite runs on whatever backend JAX picks (CPU, GPU, TPU). Its numerical comparisons are
written for IEEE float32 arithmetic, so on an accelerator two settings make it compute that:

* float32 matrix products at full precision (`jax_default_matmul_precision="highest"`): GPUs
  and TPUs otherwise multiply float32 matrices with TF32 or bfloat16 inputs, about 1e-3
  relative error, which the comparisons against numpy, rlax and hand-computed values would
  read as wrong answers;
* deterministic GPU kernels (`--xla_gpu_deterministic_ops=true`), so that two runs of one
  program give the same bits, as the suite's bit-identity checks (resume, chunking) expect
  within one backend.

On CPU neither changes anything. Tests that need the CPU itself (its XLA flags, forced host
devices, execution threads) run their programs on the CPU backend explicitly, most in
subprocesses with `JAX_PLATFORMS=cpu`, and say so.

The suite applies the command lines' CPU settings (`acjax.cpu.apply()`: XLA's
concurrency-optimised scheduler off, the straight-line threefry lowering), as the command lines
do; importing acjax itself changes nothing (tests/test_layering.py).
"""

import os

import jax
import pytest

import acjax.cpu

_DETERMINISTIC = "--xla_gpu_deterministic_ops=true"
if _DETERMINISTIC not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_DETERMINISTIC}".strip()

acjax.cpu.apply()  # before JAX's backend starts
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture(autouse=True)
def _restore_xla_flags(monkeypatch):
    """Restores XLA_FLAGS after every test: a command line's `main()` run in this process sets
    the CPU device count there (for the backend it would start), which must not reach the
    subprocesses of later tests."""
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))


def _interrupted(args, *, env, cwd, signals, timeout=300):
    """Starts `python -m ...args`, sends `signals` (one or two) once the first report line
    appears, and returns `(returncode, stdout, stderr, seconds from the first signal to exit)`."""
    import re
    import subprocess
    import sys
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=cwd, env=env,
    )
    lines = []
    for line in proc.stdout:  # training has begun: the host is between or inside chunks
        lines.append(line)
        if re.match(r"steps +[\d,]+ +return", line):  # a report line, after a chunk
            break
    t = time.perf_counter()
    for i, signum in enumerate(signals):
        if i:
            time.sleep(0.05)
        proc.send_signal(signum)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, "".join(lines) + out, err, time.perf_counter() - t


@pytest.fixture
def interrupted():
    """`interrupted(args, env=..., cwd=..., signals=[signal.SIGINT])`: a command line
    interrupted once its training has begun (see `_interrupted`)."""
    return _interrupted
