"""Targets and losses of search-guided actor-critics (AlphaZero): pure JAX, any batch shape.

* `visit_count_policy`: the search's improved policy, the visit counts raised to 1/τ and
  normalised over the legal actions (τ → 0: the most visited action, ties split evenly);
* `alphazero_loss`: the cross-entropy of the network's masked policy against that target plus
  the squared error of its value against the game's outcome, `(loss, metrics)`.

Both follow the library contract (docs/library-contract.md): arrays first, hyperparameters by
keyword (the loss, a total, takes everything by keyword), `weights` and `reduction` on the loss,
metric names prefixed `alphazero_`, errors naming the argument. See "Mastering the game of Go
without human knowledge" (Silver et al. 2017) and "A general reinforcement learning algorithm
that masters chess, shogi, and Go through self-play" (Silver et al. 2018).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from acjax.core import checks

__all__ = ["alphazero_loss", "visit_count_policy"]

Array = jax.Array


def _legal(fn: str, legal_actions: Any, shape: tuple[int, ...]) -> Array:
    """`legal_actions` as a bool mask of `shape` (all legal when None)."""
    if legal_actions is None:
        return jnp.ones(shape, bool)
    got = tuple(np.shape(legal_actions))
    if got != shape:
        raise ValueError(f"{fn}: legal_actions has shape {got}, expected {shape} (one flag per "
                         "action, like the counts or logits)")
    kind = np.dtype(legal_actions.dtype if hasattr(legal_actions, "dtype")
                    else np.asarray(legal_actions).dtype)
    if kind != np.bool_ and not np.issubdtype(kind, np.integer):
        raise ValueError(f"{fn}: legal_actions has dtype {kind}; pass a bool mask (True: legal)")
    return jnp.asarray(legal_actions) != 0


def visit_count_policy(visit_counts: Any, legal_actions: Any = None, *,
                       temperature: Any) -> Array:
    """The search's policy target π(a|s) = N(s,a)^(1/τ) / Σ_b N(s,b)^(1/τ) over legal actions.

    Computed in log space (a softmax of log N(s,a) / τ), so large counts and small τ neither
    overflow nor underflow. τ = 0 gives the most visited legal action (ties split evenly); a
    state whose legal actions have no visit gets the uniform policy over them. Illegal actions
    get probability 0 whatever their count. The result gets `stop_gradient` (a target).

    Args:
      visit_counts: N(s, a) >= 0, shape `[..., A]` (integer or float).
      legal_actions: bool `[..., A]` (True: legal), or None (every action legal).
      temperature: τ >= 0, scalar (may be traced): 1 samples in proportion to the visits
        (AlphaZero's first moves), 0 picks the most visited action.

    Returns:
      π `[..., A]`, each row summing to 1 over the legal actions: float32 for integer counts,
      else the counts' dtype (computed in float32).
    """
    fn = "visit_count_policy"
    counts = jnp.asarray(visit_counts)
    shape = tuple(counts.shape)
    if len(shape) < 1 or shape[-1] < 1:
        raise ValueError(f"{fn}: visit_counts has shape {shape}; pass counts of shape [..., A] "
                         "with at least one action")
    if not (jnp.issubdtype(counts.dtype, jnp.integer) or jnp.issubdtype(counts.dtype,
                                                                         jnp.floating)):
        raise ValueError(f"{fn}: visit_counts has dtype {counts.dtype}; pass integer or float "
                         "counts")
    out_dtype = counts.dtype if jnp.issubdtype(counts.dtype, jnp.floating) else jnp.float32
    concrete = checks.concrete(counts)
    if concrete is not None and np.any(concrete < 0):
        raise ValueError(f"{fn}: visit_counts holds negative values; counts are >= 0")
    counts = jnp.asarray(visit_counts, jnp.float32)
    legal = _legal(fn, legal_actions, shape)
    tau = checks.hyperparameter(fn, "temperature", temperature, np.dtype(np.float32), low=0.0,
                                example="1.0")
    counts = jnp.where(legal, counts, 0.0)
    visited = counts > 0
    any_visit = jnp.any(visited, axis=-1, keepdims=True)
    uniform = legal / jnp.maximum(jnp.sum(legal, axis=-1, keepdims=True), 1)
    # τ > 0: softmax of log N / τ over the visited actions.
    safe_tau = jnp.where(tau > 0, tau, 1.0)
    logits = jnp.where(visited, jnp.log(jnp.where(visited, counts, 1.0)) / safe_tau, -jnp.inf)
    logits = logits - jnp.max(jnp.where(visited, logits, -jnp.inf), axis=-1, keepdims=True)
    soft = jnp.where(visited, jnp.exp(jnp.where(visited, logits, 0.0)), 0.0)
    soft = soft / jnp.maximum(jnp.sum(soft, axis=-1, keepdims=True), 1e-30)
    # τ = 0: the most visited actions, split evenly.
    top = visited & (counts == jnp.max(counts, axis=-1, keepdims=True))
    hard = top / jnp.maximum(jnp.sum(top, axis=-1, keepdims=True), 1)
    policy = jnp.where(tau > 0, soft, hard)
    return jax.lax.stop_gradient(jnp.where(any_visit, policy, uniform).astype(out_dtype))


def alphazero_loss(
    *,
    policy_logits: Array,
    values: Array,
    target_policies: Array,
    target_values: Array,
    legal_actions: Any = None,
    value_coef: Any = 1.0,
    weights: Any = None,
    reduction: str = "mean",
) -> tuple[Array, dict[str, Array]]:
    """AlphaZero's loss (every argument by keyword): per sample

      lᵢ = -Σ_a πᵢ(a) log pᵢ(a) + c_v (zᵢ - vᵢ)²,

    with p = softmax of the logits masked to the legal actions, π the search's target
    (`visit_count_policy`) and z the outcome seen from the player to move (or a value
    target); `L = reduce_w(l)`. The L2 term of the paper is the optimizer's weight decay.
    Targets get `stop_gradient`; the policy term is 0 for an action the target gives 0
    (illegal actions never enter it, whatever their logits).

    Args:
      policy_logits: the network's logits, shape `[..., A]`.
      values: the network's value v(s), shape `[...]`.
      target_policies: π, shape `[..., A]`, rows summing to 1 over the legal actions.
      target_values: z, shape `[...]`.
      legal_actions: bool `[..., A]` or None (every action legal).
      value_coef: c_v >= 0, scalar (may be traced).
      weights: per-sample weights broadcastable to `[...]`, or None.
      reduction: "mean", "sum" or "none" (per-sample `[...]`).

    Returns:
      `(loss, metrics)`: `alphazero_loss` (the weighted mean total), `alphazero_policy_loss`
      (the cross-entropy), `alphazero_value_loss` ((z - v)²), `alphazero_policy_entropy` (of
      p) and `alphazero_policy_accuracy` (argmax p = argmax π), weighted means, float32.
    """
    fn = "alphazero_loss"
    checks.check_reduction(fn, reduction)
    named = {"policy_logits": policy_logits, "target_policies": target_policies}
    dtype = checks.float_dtype(fn, {**named, "values": values, "target_values": target_values})
    shape = checks.check_same_shape(fn, named)
    if len(shape) < 1:
        raise ValueError(f"{fn}: policy_logits has shape {shape}; pass logits of shape [..., A]")
    batch = checks.check_same_shape(
        fn, {"values": values, "target_values": target_values,
             "policy_logits[..., 0]": np.empty(shape[:-1])},
        hint="values and target_values have the logits' shape without the action axis")
    checks.check_nonempty(fn, "values", batch)
    coef = checks.hyperparameter(fn, "value_coef", value_coef, dtype, low=0.0, example="1.0")
    legal = _legal(fn, legal_actions, shape)
    logits = checks.as_float(policy_logits, dtype)
    logits = jnp.where(legal, logits, jnp.finfo(dtype).min)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    target = jax.lax.stop_gradient(checks.as_float(target_policies, dtype))
    cross = -jnp.sum(jnp.where(target > 0, target * log_p, 0.0), axis=-1)
    v = checks.as_float(values, dtype)
    z = jax.lax.stop_gradient(checks.as_float(target_values, dtype))
    squared = jnp.square(z - v)
    per_sample = cross + coef * squared
    loss = checks.reduce(fn, per_sample, weights, reduction)
    w = None if weights is None else checks.weights_like(fn, weights, batch, dtype)
    p = jnp.exp(log_p)
    entropy = -jnp.sum(jnp.where(legal, p * log_p, 0.0), axis=-1)
    accurate = jnp.argmax(logits, axis=-1) == jnp.argmax(target, axis=-1)
    metrics = {
        "alphazero_loss": checks.weighted_mean(per_sample, w),
        "alphazero_policy_loss": checks.weighted_mean(cross, w),
        "alphazero_value_loss": checks.weighted_mean(squared, w),
        "alphazero_policy_entropy": checks.weighted_mean(entropy, w),
        "alphazero_policy_accuracy": checks.weighted_mean(accurate.astype(dtype), w),
    }
    return loss, metrics
