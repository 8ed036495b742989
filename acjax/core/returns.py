"""Advantage and return estimators over time-major rollouts.

All functions take arrays of shape `[T, ...]`: time is the leading axis and any
trailing batch shape (`[T]`, `[T, B]`, `[T, B, K]`, ...) is carried through
unchanged. Step `t` is the transition `(s_t, a_t, r_t, s'_t)`:

  * `rewards[t]`      is `r_t`, the reward received after acting in `s_t`;
  * `values[t]`       is `V(s_t)`;
  * `next_values[t]`  is `V(s'_t)`, where `s'_t` is the true successor of `s_t`.
    When the episode continues this is `s_{t+1}`; when the episode ended at
    step `t` it is the final observation returned by the environment, *not*
    the first observation of the next episode (which an auto-resetting
    environment places at `s_{t+1}`).

Episode ends come in two kinds, and they are treated differently:

  * `terminated[t]`: the environment reached a terminal state. The value of the
    successor is zero by definition, so nothing is bootstrapped at step `t`.
  * `truncated[t]`: the episode was cut short (a time limit) although the
    underlying process would have continued. The return beyond step `t` is
    unknown but not zero, so it is estimated by bootstrapping from
    `next_values[t]`, the value of the final observation.

In both cases (`done = terminated | truncated`) no return, trace or advantage
flows from step `t + 1` back into step `t`: step `t + 1` belongs to another
episode. A step may be both terminated and truncated; termination then wins
(no bootstrap). The end of the rollout (`t = T - 1`) is handled like a
truncation: the return is bootstrapped from `next_values[T - 1]` unless that
step terminated.

Treating a time limit as a termination biases value estimates towards the
finite-horizon return; these functions keep the two signals apart.

`terminated` and `truncated` may be boolean or floating point (0/1) arrays.
Everything is computed in the floating point dtype of `rewards`, which is also
the dtype of every result.
`gamma` and `gae_lambda` are scalars and may be traced (for instance vmapped
over in a hyperparameter sweep). Results are not wrapped in `stop_gradient`;
callers that use them as regression targets should stop gradients themselves.
"""

import operator

import chex
import jax
import jax.numpy as jnp

__all__ = [
    "discounted_returns",
    "gae",
    "n_step_returns",
    "td_errors",
]


Array = chex.Array
Numeric = chex.Numeric


def _check_inputs(float_arrays: list[Array], flag_arrays: list[Array]) -> None:
    """Static checks shared by all estimators: equal `[T, ...]` shapes, T >= 1, float inputs."""
    chex.assert_type(float_arrays, float)
    chex.assert_equal_shape(float_arrays + flag_arrays)
    shape = float_arrays[0].shape
    if not shape or shape[0] < 1:
        raise ValueError(
            f"Inputs must be time-major with shape [T, ...] and T >= 1; got shape {shape}. "
            "Pass rollouts with a leading time axis of at least one step."
        )


# Scan bodies live at module level (and close over nothing) so that repeated
# un-jitted calls reuse the compiled scan instead of tracing a new one.


def _gae_step(acc: Array, xs: tuple[Array, Array]) -> tuple[Array, Array]:
    """One backward step of A = δ + γ λ (1 - done) A'."""
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


def _bootstrap_mask(terminated: Array, truncated: Array) -> Array:
    """Steps whose return stops and bootstraps: episode ends and the last step."""
    done = jnp.logical_or(terminated.astype(bool), truncated.astype(bool))
    return done.at[-1].set(True)


def td_errors(
    rewards: Array,
    values: Array,
    next_values: Array,
    terminated: Array,
    gamma: Numeric,
) -> Array:
    """Computes one-step temporal difference errors.

      δₜ = rₜ + γ (1 - terminatedₜ) V(s'ₜ) - V(sₜ).

    Truncation needs no argument: `next_values[t]` already is the value of the
    final observation when step `t` was truncated, so bootstrapping from it is
    exactly what a time limit requires.

    Args:
      rewards: rewards rₜ, shape `[T, ...]`, for t in [0, T-1].
      values: V(sₜ), shape `[T, ...]`, for t in [0, T-1].
      next_values: V(s'ₜ) of the true successors, shape `[T, ...]`, for t in [0, T-1].
      terminated: termination flags, bool or float, shape `[T, ...]`, for t in [0, T-1].
      gamma: scalar discount factor γ.

    Returns:
      TD errors δₜ for t in [0, T-1], shape `[T, ...]`, dtype of `rewards`.
    """
    _check_inputs([rewards, values, next_values], [terminated])
    dtype = rewards.dtype
    gamma = jnp.asarray(gamma, dtype)
    not_terminated = 1.0 - terminated.astype(dtype)
    return rewards + gamma * not_terminated * next_values.astype(dtype) - values.astype(dtype)


def gae(
    rewards: Array,
    values: Array,
    next_values: Array,
    terminated: Array,
    truncated: Array,
    gamma: Numeric,
    gae_lambda: Numeric,
    *,
    unroll: int = 1,
) -> tuple[Array, Array]:
    """Computes generalised advantage estimates and value targets.

    The advantages are computed backwards in time, from `A_{T-1}` to `A_0`:

      δₜ = rₜ + γ (1 - terminatedₜ) V(s'ₜ) - V(sₜ),
      Aₜ = δₜ + γ λ (1 - doneₜ) Aₜ₊₁,        A_T = 0,

    with `doneₜ = terminatedₜ | truncatedₜ`. A truncated step bootstraps from
    the value of its final observation, a terminated step does not, and no
    trace crosses an episode boundary. The value targets are `Aₜ + V(sₜ)`.

    See "High-Dimensional Continuous Control Using Generalized Advantage
    Estimation", Schulman et al. (https://arxiv.org/abs/1506.02438).

    Args:
      rewards: rewards rₜ, shape `[T, ...]`, for t in [0, T-1].
      values: V(sₜ), shape `[T, ...]`, for t in [0, T-1].
      next_values: V(s'ₜ) of the true successors, shape `[T, ...]`, for t in [0, T-1].
      terminated: termination flags, bool or float, shape `[T, ...]`, for t in [0, T-1].
      truncated: truncation flags, bool or float, shape `[T, ...]`, for t in [0, T-1].
      gamma: scalar discount factor γ.
      gae_lambda: scalar trace parameter λ.
      unroll: unroll factor of the reverse `lax.scan` over time.

    Returns:
      A tuple `(advantages, targets)` for t in [0, T-1], each of shape `[T, ...]`
      and the dtype of `rewards`.
    """
    _check_inputs([rewards, values, next_values], [terminated, truncated])
    dtype = rewards.dtype
    values = values.astype(dtype)
    deltas = td_errors(rewards, values, next_values, terminated, gamma)
    not_done = 1.0 - jnp.maximum(terminated.astype(dtype), truncated.astype(dtype))
    decays = jnp.asarray(gamma, dtype) * jnp.asarray(gae_lambda, dtype) * not_done
    init = jnp.zeros(rewards.shape[1:], dtype)
    _, advantages = jax.lax.scan(_gae_step, init, (deltas, decays), reverse=True, unroll=unroll)
    return advantages, advantages + values


def discounted_returns(
    rewards: Array,
    next_values: Array,
    terminated: Array,
    truncated: Array,
    gamma: Numeric,
) -> Array:
    """Computes bootstrapped discounted returns.

    The returns are computed backwards in time, from `G_{T-1}` to `G_0`:

      Gₜ = rₜ + γ (1 - terminatedₜ) V(s'ₜ)    if doneₜ or t = T-1,
      Gₜ = rₜ + γ Gₜ₊₁                         otherwise,

    with `doneₜ = terminatedₜ | truncatedₜ`. The return bootstraps from the true
    successor's value at a truncation and at the end of the rollout, is never
    carried across an episode boundary, and is zero after a termination.

    Args:
      rewards: rewards rₜ, shape `[T, ...]`, for t in [0, T-1].
      next_values: V(s'ₜ) of the true successors, shape `[T, ...]`, for t in [0, T-1].
      terminated: termination flags, bool or float, shape `[T, ...]`, for t in [0, T-1].
      truncated: truncation flags, bool or float, shape `[T, ...]`, for t in [0, T-1].
      gamma: scalar discount factor γ.

    Returns:
      Discounted returns Gₜ for t in [0, T-1], shape `[T, ...]`, dtype of `rewards`.
    """
    _check_inputs([rewards, next_values], [terminated, truncated])
    dtype = rewards.dtype
    gamma = jnp.asarray(gamma, dtype)
    discounts = gamma * (1.0 - terminated.astype(dtype))
    bootstrap = _bootstrap_mask(terminated, truncated)

    init = jnp.zeros(rewards.shape[1:], dtype)
    xs = (rewards, discounts, next_values.astype(dtype), bootstrap)
    _, returns = jax.lax.scan(_return_step, init, xs, reverse=True)
    return returns


def n_step_returns(
    rewards: Array,
    next_values: Array,
    terminated: Array,
    truncated: Array,
    gamma: Numeric,
    n: int,
) -> Array:
    """Computes bootstrapped n-step return targets (as in n-step actor-critic).

    For each t, rewards are accumulated for `m` steps and then bootstrapped:

      Gₜ⁽ⁿ⁾ = Σ_{k=0}^{m-1} γᵏ rₜ₊ₖ + γᵐ (1 - terminatedₜ₊ₘ₋₁) V(s'ₜ₊ₘ₋₁),

    where `m = min(n, d, T - t)` and `d` is the number of steps up to and
    including the first done step (`terminated | truncated`) at or after `t`.
    The window therefore never crosses an episode boundary or the end of the
    rollout. With `n = 1` this is the one-step target `rₜ + γ (1 -
    terminatedₜ) V(s'ₜ)`; with `n >= T` it equals `discounted_returns`.

    Equivalently, `Gₜ⁽ⁿ⁾` is the `discounted_returns` recursion cut off after
    `n` steps. It is evaluated for all t at once by a reverse scan over the
    window offset k = n-1, ..., 0 (not over time), reading time-shifted slices
    of the inputs; the cost is O(n T) and the memory O(T).

    Args:
      rewards: rewards rₜ, shape `[T, ...]`, for t in [0, T-1].
      next_values: V(s'ₜ) of the true successors, shape `[T, ...]`, for t in [0, T-1].
      terminated: termination flags, bool or float, shape `[T, ...]`, for t in [0, T-1].
      truncated: truncation flags, bool or float, shape `[T, ...]`, for t in [0, T-1].
      gamma: scalar discount factor γ.
      n: static number of steps, a Python int >= 1.

    Returns:
      n-step targets for t in [0, T-1], shape `[T, ...]`, dtype of `rewards`.
    """
    n = operator.index(n)
    if n < 1:
        raise ValueError(
            f"n_step_returns requires n >= 1, got n={n}. Pass n=1 for one-step TD "
            "targets or a larger integer for longer windows."
        )
    _check_inputs([rewards, next_values], [terminated, truncated])
    dtype = rewards.dtype
    seq_len = rewards.shape[0]
    # Windows never extend beyond the rollout, so n > T behaves like n = T.
    n = min(n, seq_len)
    gamma = jnp.asarray(gamma, dtype)
    discounts = gamma * (1.0 - terminated.astype(dtype))
    bootstrap = _bootstrap_mask(terminated, truncated)

    # Pad the time axis with n - 1 entries. Whatever they contribute is discarded:
    # every window that reaches past the rollout stops at step T - 1, where
    # `bootstrap` is set and `jnp.where` selects next_values[T - 1].
    def _pad(x):
        return jnp.concatenate([x, jnp.zeros((n - 1,) + x.shape[1:], x.dtype)])

    padded = tuple(_pad(x) for x in (rewards, discounts, next_values.astype(dtype), bootstrap))
    # Offset k = n - 1, the last step of every window, always bootstraps.
    reward, discount, next_value, _ = (x[n - 1 :] for x in padded)
    targets = reward + discount * next_value
    # Offsets k = n - 2, ..., 0, innermost first.
    (targets, _), _ = jax.lax.scan(
        _n_step_body, (targets, padded), jnp.arange(n - 1), reverse=True
    )
    return targets
