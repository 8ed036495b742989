"""acjax's backend settings change speed, never values; gymnax's plotting imports are deferred."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

from acjax import backend


def _draws(seed):
    key = jax.random.PRNGKey(seed)
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "split": jax.random.split(k1, 5),
        "fold_in": jax.vmap(lambda i: jax.random.fold_in(k2, i))(jnp.arange(7)),
        "uniform": jax.random.uniform(k2, (33,)),
        "normal": jax.random.normal(k3, (4, 5)),
        "categorical": jax.random.categorical(k1, jnp.zeros((9, 3))),
        "permutation": jax.random.permutation(k3, 128),
        "bits": jax.random.bits(k1, (17,), jnp.uint32),
    }


def test_unrolled_threefry_draws_bit_identical_numbers():
    try:
        assert backend.unroll_cpu_threefry(False)
        # A fresh function object per lowering: jit caches compiled programs per function.
        rolled = jax.jit(lambda s: _draws(s))(3)
        assert backend.unroll_cpu_threefry(True)
        unrolled = jax.jit(lambda s: _draws(s))(3)
    finally:
        backend.apply_defaults()
    for name in rolled:
        np.testing.assert_array_equal(np.asarray(rolled[name]), np.asarray(unrolled[name]), name)


def test_unrolled_lowering_has_no_while_loop():
    def draw(key):
        return jax.random.uniform(key, (8,))

    try:
        backend.unroll_cpu_threefry(False)
        rolled = jax.jit(lambda k: draw(k)).lower(jax.random.PRNGKey(0)).as_text()
        backend.unroll_cpu_threefry(True)
        unrolled = jax.jit(lambda k: draw(k)).lower(jax.random.PRNGKey(0)).as_text()
    finally:
        backend.apply_defaults()
    assert "stablehlo.while" in rolled
    assert "stablehlo.while" not in unrolled


_PROBE = """
import json, sys
from acjax.envs import make_env
make_env("CartPole-v1")
loaded = {n: type(sys.modules.get(n)).__name__ for n in ("seaborn", "matplotlib.pyplot")}
import seaborn as sns
palette = sns.color_palette("cubehelix", 2)
import matplotlib.pyplot as plt
plt.figure()
print(json.dumps({"before_use": loaded, "palette_len": len(palette),
                  "after_use": type(sys.modules["seaborn"]).__name__,
                  "backend": plt.get_backend()}))
"""


def test_gymnax_plotting_imports_are_deferred_until_used():
    env = {**os.environ, "MPLBACKEND": "Agg"}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # Loaded by gymnax's import only as stand-ins; the real modules load on first use.
    assert result["before_use"] == {"seaborn": "_DeferredModule",
                                    "matplotlib.pyplot": "_DeferredModule"}
    assert result["palette_len"] == 2
    assert result["after_use"] == "module"
