"""Argument checks and conversions every public function of the core shares.

Each function here names the argument it checks in its error, says what it got (shape, dtype or
value) and how to fix it, and raises at trace time: shapes and dtypes are static, and
hyperparameters given as Python numbers (or concrete arrays) are checked by value; traced
hyperparameters pass unchecked. Nothing here emits a warning: dtypes are canonicalised once
(a NumPy float64 input becomes float32 unless `jax_enable_x64` is on, silently).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "REDUCTIONS",
    "Reduction",
    "as_flags",
    "as_float",
    "check_nonempty",
    "check_reduction",
    "check_same_shape",
    "concrete",
    "float_dtype",
    "hyperparameter",
    "metric",
    "reduce",
    "swap_time_batch",
    "time_major_view",
    "weighted_mean",
    "weights_like",
]

Reduction = Literal["mean", "sum", "none"]
REDUCTIONS = ("mean", "sum", "none")


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(np.shape(x))


def _dtype(x: Any) -> np.dtype:
    return jnp.result_type(x) if not hasattr(x, "dtype") else np.dtype(x.dtype)


def float_dtype(fn: str, named: Mapping[str, Any]) -> np.dtype:
    """The canonical floating dtype the arrays in `named` promote to (the result dtype).

    Raises:
      TypeError: naming the first argument that is not floating point.
    """
    for name, x in named.items():
        if not jnp.issubdtype(_dtype(x), jnp.floating):
            raise TypeError(
                f"{fn}: {name} has dtype {_dtype(x)}; pass floating-point {name} "
                f"(e.g. {name}.astype(jnp.float32))"
            )
    return jax.dtypes.canonicalize_dtype(jnp.result_type(*named.values()))


def as_float(x: Any, dtype: np.dtype) -> jax.Array:
    """`x` as a `dtype` array (no warning for a NumPy float64 input with x64 off)."""
    return jnp.asarray(x, jax.dtypes.canonicalize_dtype(dtype))


def concrete(x: Any) -> np.ndarray | None:
    """`x` as a NumPy array when its value is known at trace time, else None (traced)."""
    if isinstance(x, jax.core.Tracer):
        return None
    try:
        return np.asarray(x)
    except (TypeError, jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        return None


def as_flags(fn: str, name: str, x: Any) -> jax.Array:
    """An episode-end flag array as bool.

    Bool arrays pass; integer arrays hold 0/1 (checked where their values are known at trace
    time) and are converted with `!= 0`. Floating-point flags are refused: a fraction would mean
    half an episode end, which no estimator defines.

    Raises:
      TypeError: `x` is floating point (or not numeric).
      ValueError: a concrete integer `x` holds a value other than 0 and 1.
    """
    dtype = _dtype(x)
    if dtype == np.bool_:
        return jnp.asarray(x)
    if not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(
            f"{fn}: {name} has dtype {dtype}; episode-end flags must be bool (or 0/1 integers): "
            f"pass {name}.astype(bool), or {name} > 0.5 if it holds 0.0/1.0"
        )
    value = concrete(x)
    if value is not None and value.size and not np.isin(value, (0, 1)).all():
        bad = sorted({int(v) for v in np.unique(value) if v not in (0, 1)})[:3]
        raise ValueError(
            f"{fn}: {name} holds {bad}; episode-end flags are 0 or 1 (or bool): pass "
            f"{name} != 0 if every nonzero value marks an episode end"
        )
    return jnp.asarray(x) != 0


def check_same_shape(fn: str, named: Mapping[str, Any], hint: str = "") -> tuple[int, ...]:
    """The common shape of the arrays in `named`.

    Raises:
      ValueError: listing every argument's shape, with `hint` (how to fix a likely mix-up).
    """
    shapes = {name: _shape(x) for name, x in named.items()}
    first = next(iter(shapes.values()))
    if any(s != first for s in shapes.values()):
        listed = ", ".join(f"{n} {s}" for n, s in shapes.items())
        raise ValueError(
            f"{fn}: these arguments must have one shape, got {listed}"
            + (f"; {hint}" if hint else "")
        )
    return first


def check_nonempty(fn: str, name: str, shape: tuple[int, ...]) -> None:
    """Raises `ValueError` when an array of `shape` holds no element."""
    if int(np.prod(shape)) == 0:
        raise ValueError(f"{fn}: {name} has shape {shape}, no element; pass a non-empty batch")


def hyperparameter(
    fn: str,
    name: str,
    value: Any,
    dtype: np.dtype,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    example: str = "",
) -> jax.Array:
    """A scalar hyperparameter as a rank-0 `dtype` array, range-checked when concrete.

    NaN is refused; an infinite value passes where its side of the range has no bound (e.g. a
    clip threshold of inf: no clipping).

    Raises:
      ValueError: `value` is not a scalar, or (concrete) lies outside the range.
    """
    if _shape(value) != ():
        raise ValueError(
            f"{fn}: {name} must be a scalar, got shape {_shape(value)}"
            + (f"; pass e.g. {name}={example}" if example else "")
        )
    v = concrete(value)
    if v is not None:
        x = float(v)
        below = low is not None and (x <= low if low_open else x < low)
        above = high is not None and (x >= high if high_open else x > high)
        if below or above or np.isnan(x):  # inf passes where its side has no bound
            lo = "(" if low_open else "["
            hi = ")" if high_open else "]"
            span = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
            raise ValueError(
                f"{fn}: {name}={x!r} must lie in {span}"
                + (f"; pass e.g. {name}={example}" if example else "")
            )
    return as_float(value, dtype)


def time_major_view(
    fn: str, named: Mapping[str, Any], *, time_major: bool, num_steps: int | None
) -> dict[str, Any]:
    """The arrays in `named` with time on axis 0.

    With `time_major=False` they are batch-major `[B, T, ...]` and are transposed to
    `[T, B, ...]` (the caller transposes its results back with `swap_time_batch`). With
    `num_steps`, the time axis must have that length, so a batch-major array passed as
    time-major (or the reverse) is caught; where its two axes are equal, only `num_steps`
    can tell them apart.

    Raises:
      ValueError: naming the first array whose time axis is missing or disagrees.
    """
    axis = 0 if time_major else 1
    out = {}
    for name, x in named.items():
        shape = _shape(x)
        if len(shape) <= axis or shape[axis] < 1:
            layout = "[T, ...]" if time_major else "[B, T, ...]"
            raise ValueError(
                f"{fn}: {name} has shape {shape}; pass a {'time' if time_major else 'batch'}"
                f"-major {layout} array with at least one step"
            )
        if num_steps is not None and shape[axis] != num_steps:
            other = 1 - axis if len(shape) > 1 else None
            hint = ""
            if other is not None and shape[other] == num_steps:
                hint = (f"; it looks {'batch' if time_major else 'time'}-major: pass "
                        f"time_major={not time_major} or transpose it")
            raise ValueError(
                f"{fn}: {name} has shape {shape}, whose time axis {axis} has {shape[axis]} "
                f"steps, but num_steps={num_steps}{hint}"
            )
        out[name] = x if time_major else swap_time_batch(x)
    return out


def swap_time_batch(x: Any) -> Any:
    """Swaps axes 0 and 1 (batch-major <-> time-major; its own inverse); rank < 2 unchanged."""
    return x if np.ndim(x) < 2 else jnp.swapaxes(x, 0, 1)


def check_reduction(fn: str, reduction: str) -> None:
    """Raises `ValueError` naming `reduction` unless it is one of `REDUCTIONS`."""
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"{fn}: reduction={reduction!r} is not one of {', '.join(map(repr, REDUCTIONS))}"
        )


def weights_like(fn: str, weights: Any, shape: tuple[int, ...], dtype: np.dtype) -> jax.Array:
    """Per-sample `weights` broadcast to the batch `shape` as `dtype`.

    Raises:
      ValueError / TypeError: naming `weights`, when they do not broadcast to `shape` (or are
        not numeric).
    """
    w_shape = _shape(weights)
    try:
        np.broadcast_shapes(w_shape, shape)
        fits = np.broadcast_shapes(w_shape, shape) == shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"{fn}: weights has shape {w_shape}, which does not broadcast to the batch shape "
            f"{shape}; pass per-sample weights of shape {shape} (or one that broadcasts to it, "
            "e.g. weights[:, None] for one weight per leading index)"
        )
    kind = _dtype(weights)
    if not (jnp.issubdtype(kind, jnp.number) or kind == np.bool_):
        raise TypeError(f"{fn}: weights has dtype {kind}; pass float weights")
    return jnp.broadcast_to(as_float(weights, dtype), shape)


def reduce(
    fn: str,
    per_sample: jax.Array,
    weights: Any = None,
    reduction: str = "mean",
) -> jax.Array:
    """A loss's reduction over its per-sample values `[...]`.

    * "mean": `sum(w * l) / sum(w)` (plain `mean(l)` without weights; 0 where the weights sum
      to 0), so zero weights remove samples (a mask) and ones change nothing;
    * "sum": `sum(w * l)`;
    * "none": `w * l`, shape `[...]`.

    Raises:
      ValueError: an unknown `reduction`, an empty batch, or weights of another shape.
    """
    check_reduction(fn, reduction)
    shape = per_sample.shape
    check_nonempty(fn, "the batch", shape)
    if weights is None:
        if reduction == "mean":
            return jnp.mean(per_sample)
        return jnp.sum(per_sample) if reduction == "sum" else per_sample
    w = weights_like(fn, weights, shape, per_sample.dtype)
    if reduction == "none":
        return w * per_sample
    total = jnp.sum(w * per_sample)
    if reduction == "sum":
        return total
    norm = jnp.sum(w)
    return jnp.where(norm > 0, total / jnp.where(norm > 0, norm, 1.0), jnp.zeros_like(total))


def weighted_mean(x: jax.Array, weights: Any = None) -> jax.Array:
    """`reduce(x, weights, "mean")` as a float32 metric (weights already checked); a
    low-precision `x` is averaged in float32."""
    if weights is None:
        return metric(jnp.mean(x))
    x = jnp.asarray(x, jnp.promote_types(x.dtype, jnp.float32))
    w = jnp.broadcast_to(jnp.asarray(weights, x.dtype), x.shape)
    norm = jnp.sum(w)
    mean = jnp.sum(w * x) / jnp.where(norm > 0, norm, 1.0)
    return metric(jnp.where(norm > 0, mean, jnp.zeros_like(mean)))


def metric(x: Any) -> jax.Array:
    """A metric value as float32 (metrics are float32 whatever the inputs' dtype)."""
    return jnp.asarray(jax.lax.stop_gradient(x), jnp.float32)
