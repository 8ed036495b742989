"""What the numerics tests of the core share: named closeness checks whose largest absolute
error is kept and printed at the end of each module (`pytest -s`), and one function evaluated
eagerly, jitted or vmapped."""

import functools

import jax
import numpy as np
import pytest

MAX_ABS_ERRORS: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def report_errors():
    """Prints each comparison's largest absolute error when a module ends."""
    yield
    for name, err in sorted(MAX_ABS_ERRORS.items()):
        print(f"max abs error {name}: {err:.3g}")
    MAX_ABS_ERRORS.clear()


def assert_close(name, actual, expected, tol, rtol=0.0):
    """Asserts `|actual - expected| <= tol + rtol |expected|` elementwise, shapes equal."""
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (name, actual.shape, expected.shape)
    err = np.abs(actual - expected)
    worst = float(np.max(err, initial=0.0))
    MAX_ABS_ERRORS[name] = max(worst, MAX_ABS_ERRORS.get(name, 0.0))
    assert np.all(err <= tol + rtol * np.abs(expected)), f"{name}: max abs error {worst:.3g}"


def call_variant(variant, fn, batch, **kwargs):
    """`fn(*args, **kwargs)` for every `args` in `batch`: "plain" (eagerly), "jit", or "vmap"
    (one jitted call vmapped over the stacked batch, so that mixing between elements shows
    up as a mismatch)."""
    f = functools.partial(fn, **kwargs)
    if variant == "plain":
        return [f(*args) for args in batch]
    if variant == "jit":
        jitted = jax.jit(f)
        return [jitted(*args) for args in batch]
    if variant != "vmap":
        raise ValueError(variant)
    stacked = [np.stack(xs) for xs in zip(*batch)]
    out = jax.jit(jax.vmap(f))(*stacked)
    return [jax.tree.map(lambda o, i=i: o[i], out) for i in range(len(batch))]
