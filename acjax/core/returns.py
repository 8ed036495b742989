"""Advantage and return estimators over time-major rollouts.

Every estimator takes arrays of one shape `[T, ...]`: time is the leading axis (T >= 1) and
any trailing batch shape (`[T]`, `[T, B]`, `[T, B, K]`, ...) is carried through unchanged.
With `time_major=False` the arrays are batch-major `[B, T, ...]` and the results come back
batch-major; `num_steps=T`, when given, is checked against the time axis, which catches a
`[B, T]` array passed as `[T, B]` (where `T == B`, only `num_steps` can tell them apart).
Step `t` is the transition `(s_t, a_t, r_t, s'_t)`:

  * `rewards[t]`      is `r_t`, the reward received after acting in `s_t`;
  * `values[t]`       is `V(s_t)`;
  * `next_values[t]`  is `V(s'_t)`, where `s'_t` is the true successor of `s_t`.
    When the episode continues this is `s_{t+1}`; when the episode ended at
    step `t` it is the final observation returned by the environment, *not*
    the first observation of the next episode (which an auto-resetting
    environment places at `s_{t+1}`).

A `[T+1, ...]` value sequence (one value per state, as in rlax) is split in two: `values[:-1]`
as `values`, and `values[1:]` (with the final observations' values at episode ends) as
`next_values`.

Episode ends come in two kinds, and they are treated differently:

  * `terminated[t]`: the environment reached a terminal state. The value of the
    successor is zero by definition, so nothing is bootstrapped at step `t`, and
    `next_values[t]` is ignored entirely (selected away with `jnp.where`: a NaN or
    inf there reaches no result).
  * `truncated[t]`: the episode was cut short (a time limit) although the
    underlying process would have continued. The return beyond step `t` is
    unknown but not zero, so it is estimated by bootstrapping from
    `next_values[t]`, the value of the final observation.

In both cases (`done = terminated | truncated`) no return, trace or advantage
flows from step `t + 1` back into step `t`: step `t + 1` belongs to another
episode. A step may be both terminated and truncated; termination then wins
(no bootstrap). The end of the rollout (`t = T - 1`) is handled like a
truncation: the return is bootstrapped from `next_values[T - 1]` unless that
step terminated. Treating a time limit as a termination biases value estimates
towards the finite-horizon return; these functions keep the two signals apart.

`terminated` and `truncated` are bool arrays (0/1 integers are converted; floats are refused).
The result dtype is the floating dtype the float inputs promote to, canonicalised (NumPy
float64 gives float32 unless `jax_enable_x64` is on). Hyperparameters are keyword-only
scalars (`gamma`, `gae_lambda`, `lambda_` in [0, 1]) and may be traced, e.g. vmapped over in
a sweep; per-step discounts go through `lambda_returns(discounts=...)`. Returns, targets and
advantages are wrapped in `stop_gradient` (they are regression targets and weights).
"""

from __future__ import annotations

import operator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from acjax.core import checks

__all__ = [
    "VTraceOutput",
    "discounted_returns",
    "gae",
    "lambda_returns",
    "n_step_returns",
    "td_errors",
    "truncated_importance_weights",
    "vtrace",
]

Array = jax.Array


# ----------------------------------------------------------------------------
# Argument checks (through acjax.core.checks, so every message reads alike).
# ----------------------------------------------------------------------------


def _layout_hint(floats: dict[str, Any], time_major: bool) -> str:
    """A fix for an array with one more step than rewards (a `[T+1, ...]` value sequence)."""
    axis = 0 if time_major else 1
    ref = np.shape(floats["rewards"])
    cut, rest = ("[:-1]", "[1:]") if time_major else ("[:, :-1]", "[:, 1:]")
    for name, x in floats.items():
        shape = np.shape(x)
        if (len(shape) == len(ref) > axis and shape[axis] == ref[axis] + 1
                and shape[:axis] + shape[axis + 1:] == ref[:axis] + ref[axis + 1:]):
            if name == "values":
                return (f"values has one more step than rewards (a [T+1, ...] value sequence): "
                        f"pass values{cut} as values and V(s_T) through next_values "
                        f"(values{rest} where no episode ended)")
            return (f"{name} has one more step than rewards: it holds one successor value per "
                    f"step, V(s_(t+1)) for t in [0, T-1]; pass values{rest}")
    return ""


def _prepare(
    fn: str, floats: dict[str, Any], flags: dict[str, Any], time_major: bool, num_steps: Any
) -> tuple[np.dtype, list[Array], list[Array]]:
    """Checks dtypes, flags and shapes; returns the result dtype and the arrays time-major."""
    dtype = checks.float_dtype(fn, floats)
    bools = {name: checks.as_flags(fn, name, x) for name, x in flags.items()}
    named = {**floats, **bools}
    checks.check_same_shape(fn, named, _layout_hint(floats, time_major))
    named = {name: checks.as_float(x, dtype) if name in floats else x
             for name, x in named.items()}
    named = checks.time_major_view(fn, named, time_major=time_major, num_steps=num_steps)
    return dtype, [named[k] for k in floats], [named[k] for k in bools]


def _gamma(fn: str, gamma: Any, dtype: np.dtype) -> Array:
    """`gamma` as a scalar in [0, 1]; per-step discounts are refused with a pointer."""
    if np.shape(gamma) != ():
        raise ValueError(
            f"{fn}: gamma must be a scalar, got shape {np.shape(gamma)}; pass e.g. gamma=0.99 "
            "(per-step or per-environment discounts go through lambda_returns(discounts=...))"
        )
    return checks.hyperparameter(fn, "gamma", gamma, dtype, low=0.0, high=1.0, example="0.99")


def _unit(fn: str, name: str, value: Any, dtype: np.dtype, example: str) -> Array:
    return checks.hyperparameter(fn, name, value, dtype, low=0.0, high=1.0, example=example)


def _positive(fn: str, name: str, value: Any, dtype: np.dtype) -> Array:
    return checks.hyperparameter(fn, name, value, dtype, low=0.0, low_open=True, example="1.0")


def _out(x: Array, time_major: bool) -> Array:
    """A time-major result, stopped and returned in the caller's layout."""
    x = jax.lax.stop_gradient(x)
    return x if time_major else checks.swap_time_batch(x)


# Scan bodies live at module level (and close over nothing) so that repeated
# un-jitted calls reuse the compiled scan instead of tracing a new one.


def _gae_step(acc: Array, xs: tuple[Array, Array]) -> tuple[Array, Array]:
    """One backward step of A = δ + decay A' (decay = γ λ (1 - done), or γ c (1 - done))."""
    delta, decay = xs
    acc = delta + decay * acc
    return acc, acc


def _return_step(acc: Array, xs: tuple[Array, ...]) -> tuple[Array, Array]:
    """One backward step of G = r + γ (1 - terminated) (V(s') if stop else G')."""
    reward, discount, next_value, stop = xs
    acc = reward + discount * jnp.where(stop, next_value, acc)
    return acc, acc


def _n_step_body(
    carry: tuple[Array, tuple[Array, ...]], k: Array
) -> tuple[tuple[Array, tuple[Array, ...]], None]:
    """Applies `_return_step` at offset k of every window [t, t + n) at once."""
    targets, padded = carry
    window = tuple(jax.lax.dynamic_slice_in_dim(x, k, targets.shape[0]) for x in padded)
    targets, _ = _return_step(targets, window)
    return (targets, padded), None


def _lambda_step(carry: tuple[Array, Array], xs: tuple[Array, ...]) -> tuple[tuple, Array]:
    """One backward step of G = r + d [(1 - λ) v + λ G'] (nothing of the bracket where d = 0)."""
    acc, lam = carry
    reward, discount, value = xs
    acc = reward + jnp.where(discount == 0, 0, discount * ((1 - lam) * value + lam * acc))
    return (acc, lam), acc


def _bootstrap_mask(done: Array) -> Array:
    """Steps whose return stops and bootstraps: episode ends and the last step."""
    return done.at[-1].set(True)


def _not(flags: Array, dtype: np.dtype) -> Array:
    return 1.0 - flags.astype(dtype)


def _discounts(terminated: Array, gamma: Array, next_values: Array) -> tuple[Array, Array]:
    """`γ (1 - terminated)` and `next_values` with terminated steps selected away (NaN-safe).

    The product `γ (1 - terminated)` (not a `jnp.where` on γ) is deliberate: XLA's CPU backend
    fuses it with `next_values` into the multiply-adds the estimators have always compiled
    to, so their results stay the same bit for bit.
    """
    dtype = next_values.dtype
    discounts = gamma * _not(terminated, dtype)
    return discounts, jnp.where(terminated, jnp.zeros((), dtype), next_values)


# ----------------------------------------------------------------------------
# Estimators.
# ----------------------------------------------------------------------------


def td_errors(
    rewards: Any, values: Any, next_values: Any, terminated: Any, *,
    gamma: Any, time_major: bool = True, num_steps: int | None = None,
) -> Array:
    """One-step temporal difference errors.

      δₜ = rₜ + γ (1 - terminatedₜ) V(s'ₜ) - V(sₜ).

    Truncation needs no argument: `next_values[t]` already is the value of the
    final observation when step `t` was truncated, so bootstrapping from it is
    exactly what a time limit requires. The target `rₜ + γ (1 - terminatedₜ) V(s'ₜ)` gets
    `stop_gradient`: gradients flow through `values` only (semi-gradient TD).

    Args:
      rewards: rₜ, shape `[T, ...]`, for t in [0, T-1].
      values: V(sₜ), shape `[T, ...]`, for t in [0, T-1].
      next_values: V(s'ₜ) of the true successors, shape `[T, ...]`, for t in [0, T-1];
        ignored where terminated.
      terminated: bool termination flags, shape `[T, ...]`, for t in [0, T-1].
      gamma: scalar discount factor γ in [0, 1].
      time_major: False for batch-major `[B, T, ...]` arrays and results.
      num_steps: T, when given, checked against the time axis.

    Returns:
      TD errors δₜ for t in [0, T-1], shape `[T, ...]`.
    """
    fn = "td_errors"
    dtype, (r, v, nv), (term,) = _prepare(
        fn, {"rewards": rewards, "values": values, "next_values": next_values},
        {"terminated": terminated}, time_major, num_steps)
    discounts, nv = _discounts(term, _gamma(fn, gamma, dtype), nv)
    deltas = jax.lax.stop_gradient(r + discounts * nv) - v
    return deltas if time_major else checks.swap_time_batch(deltas)


def gae(
    rewards: Any, values: Any, next_values: Any, terminated: Any, truncated: Any, *,
    gamma: Any, gae_lambda: Any, time_major: bool = True, num_steps: int | None = None,
    unroll: int = 1,
) -> tuple[Array, Array]:
    """Generalised advantage estimates and value targets.

    The advantages are computed backwards in time, from `A_{T-1}` to `A_0`:

      δₜ = rₜ + γ (1 - terminatedₜ) V(s'ₜ) - V(sₜ),
      Aₜ = δₜ + γ λ (1 - doneₜ) Aₜ₊₁,        A_T = 0,

    with `doneₜ = terminatedₜ | truncatedₜ`. A truncated step bootstraps from
    the value of its final observation, a terminated step does not, and no
    trace crosses an episode boundary. The value targets are `Aₜ + V(sₜ)`.
    Both get `stop_gradient`.

    See "High-Dimensional Continuous Control Using Generalized Advantage
    Estimation", Schulman et al. (https://arxiv.org/abs/1506.02438).

    Args:
      rewards: rₜ, shape `[T, ...]`, for t in [0, T-1].
      values: V(sₜ), shape `[T, ...]`, for t in [0, T-1] (not `[T+1, ...]`: V(s_T) goes
        through `next_values`).
      next_values: V(s'ₜ) of the true successors, shape `[T, ...]`, for t in [0, T-1];
        ignored where terminated.
      terminated: bool termination flags, shape `[T, ...]`, for t in [0, T-1].
      truncated: bool truncation flags, shape `[T, ...]`, for t in [0, T-1].
      gamma: scalar discount factor γ in [0, 1].
      gae_lambda: scalar trace parameter λ in [0, 1].
      time_major: False for batch-major `[B, T, ...]` arrays and results.
      num_steps: T, when given, checked against the time axis.
      unroll: unroll factor of the reverse `lax.scan` over time.

    Returns:
      `(advantages, targets)` for t in [0, T-1], each of shape `[T, ...]`.
    """
    fn = "gae"
    dtype, (r, v, nv), (term, trunc) = _prepare(
        fn, {"rewards": rewards, "values": values, "next_values": next_values},
        {"terminated": terminated, "truncated": truncated}, time_major, num_steps)
    gamma = _gamma(fn, gamma, dtype)
    gae_lambda = _unit(fn, "gae_lambda", gae_lambda, dtype, "0.95")
    discounts, nv = _discounts(term, gamma, nv)
    deltas = r + discounts * nv - v
    done = jnp.logical_or(term, trunc)
    decays = gamma * gae_lambda * _not(done, dtype)
    init = jnp.zeros(r.shape[1:], dtype)
    _, advantages = jax.lax.scan(_gae_step, init, (deltas, decays), reverse=True, unroll=unroll)
    return _out(advantages, time_major), _out(advantages + v, time_major)


def discounted_returns(
    rewards: Any, next_values: Any, terminated: Any, truncated: Any, *,
    gamma: Any, time_major: bool = True, num_steps: int | None = None,
) -> Array:
    """Bootstrapped discounted returns.

    The returns are computed backwards in time, from `G_{T-1}` to `G_0`:

      Gₜ = rₜ + γ (1 - terminatedₜ) V(s'ₜ)    if doneₜ or t = T-1,
      Gₜ = rₜ + γ Gₜ₊₁                         otherwise,

    with `doneₜ = terminatedₜ | truncatedₜ`. The return bootstraps from the true
    successor's value at a truncation and at the end of the rollout, is never
    carried across an episode boundary, and is zero after a termination. The returns get
    `stop_gradient`.

    Args:
      rewards: rₜ, shape `[T, ...]`, for t in [0, T-1].
      next_values: V(s'ₜ) of the true successors, shape `[T, ...]`, for t in [0, T-1];
        ignored where terminated.
      terminated: bool termination flags, shape `[T, ...]`, for t in [0, T-1].
      truncated: bool truncation flags, shape `[T, ...]`, for t in [0, T-1].
      gamma: scalar discount factor γ in [0, 1].
      time_major: False for batch-major `[B, T, ...]` arrays and results.
      num_steps: T, when given, checked against the time axis.

    Returns:
      Discounted returns Gₜ for t in [0, T-1], shape `[T, ...]`.
    """
    fn = "discounted_returns"
    dtype, (r, nv), (term, trunc) = _prepare(
        fn, {"rewards": rewards, "next_values": next_values},
        {"terminated": terminated, "truncated": truncated}, time_major, num_steps)
    discounts, nv = _discounts(term, _gamma(fn, gamma, dtype), nv)
    bootstrap = _bootstrap_mask(jnp.logical_or(term, trunc))
    init = jnp.zeros(r.shape[1:], dtype)
    _, result = jax.lax.scan(_return_step, init, (r, discounts, nv, bootstrap), reverse=True)
    return _out(result, time_major)


def n_step_returns(
    rewards: Any, next_values: Any, terminated: Any, truncated: Any, *,
    gamma: Any, n: int, time_major: bool = True, num_steps: int | None = None,
) -> Array:
    """Bootstrapped n-step return targets (as in n-step actor-critic).

    For each t, rewards are accumulated for `m` steps and then bootstrapped:

      Gₜ⁽ⁿ⁾ = Σ_{k=0}^{m-1} γᵏ rₜ₊ₖ + γᵐ (1 - terminatedₜ₊ₘ₋₁) V(s'ₜ₊ₘ₋₁),

    where `m = min(n, d, T - t)` and `d` is the number of steps up to and
    including the first done step (`terminated | truncated`) at or after `t`.
    The window therefore never crosses an episode boundary or the end of the
    rollout. With `n = 1` this is the one-step target `rₜ + γ (1 -
    terminatedₜ) V(s'ₜ)`; with `n >= T` it equals `discounted_returns`. The targets get
    `stop_gradient`.

    Equivalently, `Gₜ⁽ⁿ⁾` is the `discounted_returns` recursion cut off after
    `n` steps. It is evaluated for all t at once by a reverse scan over the
    window offset k = n-1, ..., 0 (not over time), reading time-shifted slices
    of the inputs; the cost is O(n T) and the memory O(T).

    Args:
      rewards: rₜ, shape `[T, ...]`, for t in [0, T-1].
      next_values: V(s'ₜ) of the true successors, shape `[T, ...]`, for t in [0, T-1];
        ignored where terminated.
      terminated: bool termination flags, shape `[T, ...]`, for t in [0, T-1].
      truncated: bool truncation flags, shape `[T, ...]`, for t in [0, T-1].
      gamma: scalar discount factor γ in [0, 1].
      n: static number of steps, a Python int >= 1.
      time_major: False for batch-major `[B, T, ...]` arrays and results.
      num_steps: T, when given, checked against the time axis.

    Returns:
      n-step targets for t in [0, T-1], shape `[T, ...]`.
    """
    fn = "n_step_returns"
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(
            f"{fn}: n must be a Python int (it sets the window length statically), got "
            f"{type(n).__name__}; pass e.g. n=5"
        ) from None
    if n < 1:
        raise ValueError(f"{fn}: n must be a Python int n >= 1, got n={n}; pass n=1 for one-step "
                         "TD targets or a larger integer for longer windows")
    dtype, (r, nv), (term, trunc) = _prepare(
        fn, {"rewards": rewards, "next_values": next_values},
        {"terminated": terminated, "truncated": truncated}, time_major, num_steps)
    discounts, nv = _discounts(term, _gamma(fn, gamma, dtype), nv)
    bootstrap = _bootstrap_mask(jnp.logical_or(term, trunc))
    # Windows never extend beyond the rollout, so n > T behaves like n = T.
    n = min(n, r.shape[0])

    # Pad the time axis with n - 1 entries. Whatever they contribute is discarded:
    # every window that reaches past the rollout stops at step T - 1, where
    # `bootstrap` is set and `jnp.where` selects next_values[T - 1].
    def _pad(x):
        return jnp.concatenate([x, jnp.zeros((n - 1,) + x.shape[1:], x.dtype)])

    padded = tuple(_pad(x) for x in (r, discounts, nv, bootstrap))
    # Offset k = n - 1, the last step of every window, always bootstraps.
    reward, discount, next_value, _ = (x[n - 1:] for x in padded)
    targets = reward + discount * next_value
    # Offsets k = n - 2, ..., 0, innermost first.
    (targets, _), _ = jax.lax.scan(
        _n_step_body, (targets, padded), jnp.arange(n - 1), reverse=True
    )
    return _out(targets, time_major)


def lambda_returns(
    rewards: Any, discounts: Any, bootstrap_values: Any, *,
    lambda_: Any = 1.0, time_major: bool = True, num_steps: int | None = None,
) -> Array:
    """λ-returns with per-step discounts (rlax's `lambda_returns` in the `[T, ...]` layout).

    Computed backwards in time, from `G_{T-1}` to `G_0`:

      Gₜ = rₜ + γₜ [(1 - λ) vₜ + λ Gₜ₊₁],      G_T = v_{T-1},

    so `G_{T-1} = r_{T-1} + γ_{T-1} v_{T-1}`. Episode ends live in the discounts: `γₜ = 0`
    ends the return at step t (the bracket, with `vₜ`, is selected away: a NaN there reaches
    no result); a truncation is expressed by the caller through `vₜ` (the final observation's
    value) with `λ`-mixing still crossing the boundary, so prefer `gae` or
    `discounted_returns` where episodes are truncated. The returns get `stop_gradient`.

    See "Reinforcement Learning: An Introduction", Sutton and Barto, chapter 12.

    Args:
      rewards: rₜ, shape `[T, ...]`, for t in [0, T-1].
      discounts: per-step discounts γₜ (0 at terminations), float, shape `[T, ...]`,
        for t in [0, T-1].
      bootstrap_values: vₜ = V(sₜ₊₁), the successor values, shape `[T, ...]`,
        for t in [0, T-1].
      lambda_: scalar mixing parameter λ in [0, 1] (1: Monte Carlo bootstrapped at the end,
        0: one-step targets).
      time_major: False for batch-major `[B, T, ...]` arrays and results.
      num_steps: T, when given, checked against the time axis.

    Returns:
      λ-returns Gₜ for t in [0, T-1], shape `[T, ...]`.
    """
    fn = "lambda_returns"
    dtype, (r, d, v), _ = _prepare(
        fn, {"rewards": rewards, "discounts": discounts, "bootstrap_values": bootstrap_values},
        {}, time_major, num_steps)
    lam = _unit(fn, "lambda_", lambda_, dtype, "0.95")
    (_, _), result = jax.lax.scan(_lambda_step, (v[-1], lam), (r, d, v), reverse=True)
    return _out(result, time_major)


def truncated_importance_weights(log_rhos: Any, *, lambda_: Any = 1.0, clip: Any = 1.0) -> Array:
    """Truncated importance weights, Retrace's and V-trace's trace coefficients:

      cₜ = λ min(clip, exp(log_rhosₜ)),

    elementwise over any shape. The weights get `stop_gradient`.

    See "Safe and Efficient Off-Policy Reinforcement Learning", Munos et al.
    (https://arxiv.org/abs/1606.02647).

    Args:
      log_rhos: log importance ratios log π(aₜ|sₜ) - log μ(aₜ|sₜ), float, any shape.
      lambda_: scalar trace parameter λ in [0, 1].
      clip: scalar truncation level > 0 (Retrace: 1).

    Returns:
      cₜ, the shape and (canonical floating) dtype of `log_rhos`.
    """
    fn = "truncated_importance_weights"
    dtype = checks.float_dtype(fn, {"log_rhos": log_rhos})
    lam = _unit(fn, "lambda_", lambda_, dtype, "1.0")
    clip = _positive(fn, "clip", clip, dtype)
    rhos = jnp.exp(checks.as_float(log_rhos, dtype))
    return jax.lax.stop_gradient(jnp.minimum(clip, rhos) * lam)


class VTraceOutput(NamedTuple):
    """The results of `vtrace`, each of shape `[T, ...]` (`[B, T, ...]` with
    `time_major=False`) and the result dtype."""

    targets: Array
    """vₛₜ, the V-trace value targets (stop_gradient)."""
    errors: Array
    """vₛₜ - V(sₜ); the gradient flows through `values` only."""
    pg_advantages: Array
    """min(ρ̄_pg, ρₜ) (qₜ - V(sₜ)), the policy-gradient advantages (stop_gradient)."""
    q_estimates: Array
    """qₜ = rₜ + γ (1 - terminatedₜ) v'ₜ, the action-value estimates (stop_gradient)."""


def vtrace(
    rewards: Any, values: Any, next_values: Any, terminated: Any, truncated: Any,
    log_rhos: Any, *, gamma: Any, lambda_: Any = 1.0, clip_rho_threshold: Any = 1.0,
    clip_pg_rho_threshold: Any = 1.0, time_major: bool = True, num_steps: int | None = None,
) -> VTraceOutput:
    """V-trace targets and policy-gradient advantages, termination and truncation apart.

    With ρₜ = exp(log_rhosₜ), computed backwards in time from `t = T-1`:

      δₜ = min(ρ̄, ρₜ) (rₜ + γ (1 - terminatedₜ) V(s'ₜ) - V(sₜ)),
      cₜ = λ min(1, ρₜ),
      vₛₜ - V(sₜ) = δₜ + γ cₜ (1 - doneₜ) (vₛₜ₊₁ - V(sₜ₊₁)),      vₛ_T - V(s_T) = 0,
      v'ₜ = vₛₜ₊₁ if not doneₜ and t < T-1, else V(s'ₜ),
      qₜ = rₜ + γ (1 - terminatedₜ) v'ₜ,
      Aₜ = min(ρ̄_pg, ρₜ) (qₜ - V(sₜ)),

    with `doneₜ = terminatedₜ | truncatedₜ`: no trace crosses an episode end, and a
    truncated step (like the last one) bootstraps from V(s'ₜ), its final observation's
    value. On-policy (log_rhos = 0, λ = 1, ρ̄, ρ̄_pg >= 1) the targets are
    `gae(..., gae_lambda=1)` targets. Targets, advantages and q-estimates get
    `stop_gradient`; `errors = targets - values` keeps the gradient through `values`.

    Where the episode continues past t, v'ₜ = λ vₛₜ₊₁ + (1 - λ) V(sₜ₊₁) (vₛₜ₊₁ for λ = 1,
    the paper's qₛ = rₛ + γ vₛ₊₁); after an episode end or the last step, v'ₜ = V(s'ₜ).
    Without truncations this is rlax's `vtrace_td_error_and_advantage` per sequence (and its
    `vtrace` for the errors) with `discount_t = γ (1 - terminated)`, `v_tm1 = values`,
    `v_t = next_values`, `rho_tm1 = exp(log_rhos)`.

    See "IMPALA: Scalable Distributed Deep-RL with Importance Weighted Actor-Learner
    Architectures", Espeholt et al. (https://arxiv.org/abs/1802.01561).

    Args:
      rewards: rₜ, shape `[T, ...]`, for t in [0, T-1].
      values: V(sₜ), shape `[T, ...]`, for t in [0, T-1] (V(s_T) goes through
        `next_values`).
      next_values: V(s'ₜ) of the true successors, shape `[T, ...]`, for t in [0, T-1];
        ignored where terminated.
      terminated: bool termination flags, shape `[T, ...]`, for t in [0, T-1].
      truncated: bool truncation flags, shape `[T, ...]`, for t in [0, T-1].
      log_rhos: log π(aₜ|sₜ) - log μ(aₜ|sₜ) (target over behaviour policy), shape
        `[T, ...]`, for t in [0, T-1].
      gamma: scalar discount factor γ in [0, 1].
      lambda_: scalar trace parameter λ in [0, 1].
      clip_rho_threshold: ρ̄ > 0, the truncation of the ρₜ in δₜ.
      clip_pg_rho_threshold: ρ̄_pg > 0, the truncation of the ρₜ in the advantages.
      time_major: False for batch-major `[B, T, ...]` arrays and results.
      num_steps: T, when given, checked against the time axis.

    Returns:
      A `VTraceOutput(targets, errors, pg_advantages, q_estimates)`.
    """
    fn = "vtrace"
    dtype, (r, v, nv, log_rho), (term, trunc) = _prepare(
        fn, {"rewards": rewards, "values": values, "next_values": next_values,
             "log_rhos": log_rhos},
        {"terminated": terminated, "truncated": truncated}, time_major, num_steps)
    gamma = _gamma(fn, gamma, dtype)
    lam = _unit(fn, "lambda_", lambda_, dtype, "1.0")
    clip_rho = _positive(fn, "clip_rho_threshold", clip_rho_threshold, dtype)
    clip_pg_rho = _positive(fn, "clip_pg_rho_threshold", clip_pg_rho_threshold, dtype)

    rhos = jnp.exp(log_rho)
    cs = jnp.minimum(jnp.ones((), dtype), rhos) * lam
    discounts, nv = _discounts(term, gamma, nv)
    deltas = jnp.minimum(clip_rho, rhos) * (r + discounts * nv - v)
    done = jnp.logical_or(term, trunc)
    decays = jnp.where(done, jnp.zeros((), dtype), gamma) * cs
    init = jnp.zeros(r.shape[1:], dtype)
    _, errors = jax.lax.scan(_gae_step, init, (deltas, decays), reverse=True)
    targets = jax.lax.stop_gradient(errors + v)

    # Within an episode the next step's estimate is λ vₛₜ₊₁ + (1 - λ) V(sₜ₊₁) (rlax's
    # convention; vₛₜ₊₁ itself for λ = 1, the paper's qₛ = rₛ + γ vₛ₊₁).
    successor = jnp.concatenate([lam * targets[1:] + (1 - lam) * v[1:], nv[-1:]])
    q = r + discounts * jnp.where(_bootstrap_mask(done), nv, successor)
    pg = jnp.minimum(clip_pg_rho, rhos) * (q - v)
    out = VTraceOutput(targets, targets - v, jax.lax.stop_gradient(pg), jax.lax.stop_gradient(q))
    return out if time_major else VTraceOutput(*map(checks.swap_time_batch, out))
