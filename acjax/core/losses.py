"""Actor-critic losses as pure functions.

Every loss takes per-sample arrays of one common shape `[...]` (`[N]`, `[T, B]`, ...), whose
elements are independent samples, and returns `(loss, metrics)`: `loss` to minimise and
`metrics`, a `dict[str, Array]` of float32 scalars (weighted means), ready to be the auxiliary
output of `jax.value_and_grad(..., has_aux=True)`. Each metric name starts with its loss's
prefix (`pg_`, `clip_`, `value_`, `entropy_`, `a2c_`, `ppo_`), so the dicts of several losses
merge without collisions.

Every loss takes `weights` (per-sample, broadcastable to the batch shape; None: all ones) and
`reduction`: "mean" is `sum(w l) / sum(w)` (0 where the weights sum to 0), "sum" is
`sum(w l)` and "none" returns the weighted per-sample losses `w l`, shape `[...]`. A zero weight
removes its sample (a mask for padded steps); the metrics use the same weights.

The result has the canonical floating dtype the per-sample inputs promote to (NumPy float64
gives float32 unless `jax_enable_x64` is on). Quantities that act as fixed targets or weights
(advantages, value targets, behaviour log-probabilities and values) are wrapped in
`stop_gradient`: gradients flow only into the current log-probabilities, values and entropies.

Hyperparameters (`clip_eps`, `value_coef`, `entropy_coef`, ...) are keyword-only scalars; they
may be traced (e.g. vmapped over in a sweep) and are range-checked when concrete. The totals
`a2c_loss` and `ppo_loss` take every argument by keyword.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

from acjax.core import checks, collectives

__all__ = [
    "a2c_loss",
    "entropy_bonus",
    "normalize_advantages",
    "policy_gradient_loss",
    "ppo_clip_loss",
    "ppo_loss",
    "value_loss",
]


Array = chex.Array
Numeric = chex.Numeric
Metrics = dict[str, Array]

_sg = jax.lax.stop_gradient


def _batch(
    fn: str, named: dict[str, Any], reduction: str = "mean"
) -> tuple[np.dtype, list[Array]]:
    """Checks `reduction` and float per-sample arrays of one non-empty shape; returns the
    promoted dtype and the arrays in it."""
    checks.check_reduction(fn, reduction)
    dtype = checks.float_dtype(fn, named)
    shape = checks.check_same_shape(fn, named)
    checks.check_nonempty(fn, next(iter(named)), shape)
    return dtype, [checks.as_float(x, dtype) for x in named.values()]


def _loss_metric(loss: Array, per_sample: Array, weights: Any, reduction: str) -> Array:
    """The weighted-mean loss as a metric (the loss itself when `reduction` is "mean")."""
    if reduction == "mean":
        return checks.metric(loss)
    return checks.weighted_mean(per_sample, weights)


def _fraction(mask: Array, weights: Any) -> Array:
    """Weighted fraction of True entries of `mask`, a float32 metric."""
    return checks.weighted_mean(mask.astype(jnp.float32), weights)


# ----------------------------------------------------------------------------
# Terms
# ----------------------------------------------------------------------------


def policy_gradient_loss(
    log_probs: Array, advantages: Array, *, weights: Any = None, reduction: str = "mean"
) -> tuple[Array, Metrics]:
    """Computes the vanilla (REINFORCE / advantage actor-critic) policy loss.

      lᵢ = -sg(Aᵢ) log π_θ(aᵢ|sᵢ),   L(θ) = reduce_w(l),

    where `sg` is `stop_gradient`, so ∇L = -mean[Aᵢ ∇ log π_θ(aᵢ|sᵢ)] without weights.
    See "Simple Statistical Gradient-Following Algorithms for Connectionist Reinforcement
    Learning", Williams (1992).

    Args:
      log_probs: log π_θ(aᵢ|sᵢ) of the taken actions, shape `[...]`.
      advantages: advantage estimates Aᵢ, shape `[...]`; receive no gradient.
      weights: per-sample weights broadcastable to `[...]`, or None.
      reduction: "mean", "sum" or "none" (per-sample `[...]`).

    Returns:
      `(loss, metrics)` with the metric `pg_loss` (weighted mean loss).
    """
    fn = "policy_gradient_loss"
    _, (log_probs, advantages) = _batch(
        fn, {"log_probs": log_probs, "advantages": advantages}, reduction)
    advantages = _sg(advantages)
    loss = -checks.reduce(fn, advantages * log_probs, weights, reduction)
    return loss, {"pg_loss": _loss_metric(loss, -advantages * log_probs, weights, reduction)}


def ppo_clip_loss(
    log_probs: Array,
    old_log_probs: Array,
    advantages: Array,
    *,
    clip_eps: Numeric,
    weights: Any = None,
    reduction: str = "mean",
) -> tuple[Array, Metrics]:
    """Computes the PPO clipped surrogate policy loss.

      rᵢ = exp(log π_θ(aᵢ|sᵢ) - sg(log π_old(aᵢ|sᵢ))),
      lᵢ = -min(rᵢ sg(Aᵢ), clip(rᵢ, 1 - ε, 1 + ε) sg(Aᵢ)),   L(θ) = reduce_w(l).

    The minimum makes the objective a pessimistic bound: once the ratio has moved beyond
    `1 ± ε` in the direction the advantage favours, the sample contributes no gradient.
    See "Proximal Policy Optimization Algorithms", Schulman et al.
    (https://arxiv.org/abs/1707.06347).

    Args:
      log_probs: log π_θ(aᵢ|sᵢ) under the current policy, shape `[...]`.
      old_log_probs: log π_old(aᵢ|sᵢ) under the behaviour policy, shape `[...]`; receive no
        gradient.
      advantages: advantage estimates Aᵢ, shape `[...]`; receive no gradient.
      clip_eps: ε > 0, scalar (may be traced).
      weights: per-sample weights broadcastable to `[...]`, or None.
      reduction: "mean", "sum" or "none" (per-sample `[...]`).

    Returns:
      `(loss, metrics)` with the weighted means
        * `clip_loss`: the loss;
        * `clip_fraction`: of [|rᵢ - 1| > ε];
        * `clip_approx_kl`: of (rᵢ - 1) - log rᵢ, a low-variance, non-negative estimate of
          KL(π_old ‖ π_θ);
        * `clip_ratio_mean`: of rᵢ.
    """
    fn = "ppo_clip_loss"
    dtype, (log_probs, old_log_probs, advantages) = _batch(
        fn, {"log_probs": log_probs, "old_log_probs": old_log_probs, "advantages": advantages},
        reduction)
    eps = checks.hyperparameter(fn, "clip_eps", clip_eps, dtype, low=0.0, low_open=True,
                                example="0.2")
    advantages = _sg(advantages)
    log_ratio = log_probs - _sg(old_log_probs)
    ratio = jnp.exp(log_ratio)
    clipped_ratio = jnp.clip(ratio, 1.0 - eps, 1.0 + eps)
    objective = jnp.minimum(ratio * advantages, clipped_ratio * advantages)
    loss = -checks.reduce(fn, objective, weights, reduction)

    log_ratio, ratio = _sg(log_ratio), _sg(ratio)
    metrics = {
        "clip_loss": _loss_metric(loss, -objective, weights, reduction),
        "clip_fraction": _fraction(jnp.abs(ratio - 1.0) > eps, weights),
        "clip_approx_kl": checks.weighted_mean((ratio - 1.0) - log_ratio, weights),
        "clip_ratio_mean": checks.weighted_mean(ratio, weights),
    }
    return loss, metrics


def _weights_like(fn: str, weights: Any, x: Array) -> Array:
    """`weights` checked and broadcast to `x`'s shape, in its dtype."""
    return checks.weights_like(fn, weights, x.shape, x.dtype)


def _explained_variance(fn: str, values: Array, targets: Array, weights: Any) -> Array:
    """1 - Var_w[targets - values] / Var_w[targets]; 0 where Var_w[targets] == 0."""
    if weights is None:
        var_targets = jnp.var(targets)
        var_residual = jnp.var(targets - values)
    else:
        w = _weights_like(fn, weights, targets)
        norm = jnp.sum(w)
        safe_norm = jnp.where(norm > 0, norm, jnp.ones_like(norm))

        def var(x):
            mean = jnp.sum(w * x) / safe_norm
            return jnp.sum(w * jnp.square(x - mean)) / safe_norm

        var_targets, var_residual = var(targets), var(targets - values)
    positive = var_targets > 0
    safe_var = jnp.where(positive, var_targets, jnp.ones_like(var_targets))
    ev = jnp.where(positive, 1.0 - var_residual / safe_var, jnp.zeros_like(var_targets))
    return checks.metric(ev)


def value_loss(
    values: Array,
    targets: Array,
    old_values: Array | None = None,
    *,
    clip_eps: Numeric | None = None,
    weights: Any = None,
    reduction: str = "mean",
) -> tuple[Array, Metrics]:
    """Computes the (optionally clipped) squared-error value loss.

    Without clipping:

      lᵢ = ½ (V_φ(sᵢ) - sg(Gᵢ))²,   L(φ) = reduce_w(l).

    With `old_values` and `clip_eps` (PPO value clipping), per sample:

      Vᶜᵢ = sg(V_old(sᵢ)) + clip(V_φ(sᵢ) - sg(V_old(sᵢ)), -ε, ε),
      lᵢ  = ½ max((V_φ(sᵢ) - sg(Gᵢ))², (Vᶜᵢ - sg(Gᵢ))²).

    Args:
      values: V_φ(sᵢ) from the current critic, shape `[...]`.
      targets: value targets Gᵢ (returns), shape `[...]`; receive no gradient.
      old_values: V_old(sᵢ) from the critic that collected the data, shape `[...]`; receive no
        gradient. Needed only with `clip_eps`.
      clip_eps: ε > 0, scalar (may be traced), or None for the unclipped loss.
      weights: per-sample weights broadcastable to `[...]`, or None.
      reduction: "mean", "sum" or "none" (per-sample `[...]`).

    Returns:
      `(loss, metrics)` with the weighted statistics
        * `value_loss`: the mean loss;
        * `value_explained_variance`: 1 - Var[G - V] / Var[G] over the batch (0 when
          Var[G] = 0);
        * `value_clip_fraction`: mean of [|V_φ - V_old| > ε] (only when clipping).

    Raises:
      ValueError: if only one of `old_values` and `clip_eps` is given.
    """
    fn = "value_loss"
    if (old_values is None) != (clip_eps is None):
        given, missing = ("clip_eps", "old_values") if old_values is None else (
            "old_values", "clip_eps")
        raise ValueError(
            f"{fn}: got {given} but {missing} is None; value clipping needs both old_values "
            "and clip_eps: pass both to clip the value loss, or neither for the unclipped "
            "squared error"
        )
    named = {"values": values, "targets": targets}
    if old_values is not None:
        named["old_values"] = old_values
    dtype, arrays = _batch(fn, named, reduction)
    values, targets = arrays[:2]
    eps = None if clip_eps is None else checks.hyperparameter(
        fn, "clip_eps", clip_eps, dtype, low=0.0, low_open=True, example="0.2")
    targets = _sg(targets)
    per_sample = jnp.square(values - targets)
    metrics: Metrics = {}
    if eps is not None:
        old_values = _sg(arrays[2])
        delta = values - old_values
        clipped_values = old_values + jnp.clip(delta, -eps, eps)
        per_sample = jnp.maximum(per_sample, jnp.square(clipped_values - targets))
        metrics["value_clip_fraction"] = _fraction(jnp.abs(_sg(delta)) > eps, weights)
    loss = 0.5 * checks.reduce(fn, per_sample, weights, reduction)
    metrics["value_loss"] = (checks.metric(loss) if reduction == "mean"
                             else 0.5 * checks.weighted_mean(per_sample, weights))
    metrics["value_explained_variance"] = _explained_variance(fn, _sg(values), targets, weights)
    return loss, metrics


def entropy_bonus(
    entropies: Array, *, weights: Any = None, reduction: str = "mean"
) -> tuple[Array, Metrics]:
    """Computes the entropy bonus, a quantity to add to the objective.

      B(θ) = reduce_w(H(π_θ(·|sᵢ))).

    Maximising B (subtracting `coef * B` from a loss) keeps the policy from collapsing
    prematurely onto a single action.

    Args:
      entropies: per-state policy entropies H(π_θ(·|sᵢ)), shape `[...]`.
      weights: per-sample weights broadcastable to `[...]`, or None.
      reduction: "mean", "sum" or "none" (per-sample `[...]`).

    Returns:
      `(bonus, metrics)` with the metric `entropy_mean` (the weighted mean entropy).
    """
    fn = "entropy_bonus"
    _, (entropies,) = _batch(fn, {"entropies": entropies}, reduction)
    bonus = checks.reduce(fn, entropies, weights, reduction)
    return bonus, {"entropy_mean": _loss_metric(bonus, entropies, weights, reduction)}


# ----------------------------------------------------------------------------
# Totals
# ----------------------------------------------------------------------------


def _total(
    fn: str,
    terms: tuple[tuple[Array, Metrics], ...],
    names: tuple[str, str, str],
    value_coef: Array,
    entropy_coef: Array,
    reduction: str,
) -> tuple[Array, Metrics]:
    """`pg + c_v v - c_H h` with the terms' metrics and `{fn}` (the weighted mean total)."""
    (pg, pg_m), (vf, vf_m), (ent, ent_m) = terms
    total = pg + value_coef * vf - entropy_coef * ent
    if reduction == "mean":
        mean_total = checks.metric(total)
    else:
        pg_name, vf_name, ent_name = names
        mean_total = (pg_m[pg_name] + checks.metric(value_coef) * vf_m[vf_name]
                      - checks.metric(entropy_coef) * ent_m[ent_name])
    return total, {**pg_m, **vf_m, **ent_m, fn: mean_total}


def _coefficients(fn: str, value_coef: Numeric, entropy_coef: Numeric, dtype) -> tuple:
    return (
        checks.hyperparameter(fn, "value_coef", value_coef, dtype, low=0.0, example="0.5"),
        checks.hyperparameter(fn, "entropy_coef", entropy_coef, dtype, low=0.0,
                              example="0.01"),
    )


def a2c_loss(
    *,
    log_probs: Array,
    advantages: Array,
    values: Array,
    targets: Array,
    entropies: Array,
    value_coef: Numeric,
    entropy_coef: Numeric,
    weights: Any = None,
    reduction: str = "mean",
) -> tuple[Array, Metrics]:
    """Computes the advantage actor-critic (A2C / A3C) loss (every argument by keyword).

      L = L_pg(θ) + c_v L_V(φ) - c_H B(θ),

    with `L_pg = policy_gradient_loss(log_probs, advantages)`, `L_V = value_loss(values,
    targets)` and `B = entropy_bonus(entropies)`, each with the same `weights` and
    `reduction` (with "none", the per-sample total `pg_i + c_v v_i - c_H h_i`). See
    "Asynchronous Methods for Deep Reinforcement Learning", Mnih et al.
    (https://arxiv.org/abs/1602.01783).

    Args:
      log_probs: log π_θ(aᵢ|sᵢ) of the taken actions, shape `[...]`.
      advantages: advantage estimates Aᵢ, shape `[...]`; receive no gradient.
      values: V_φ(sᵢ), shape `[...]`.
      targets: value targets Gᵢ, shape `[...]`; receive no gradient.
      entropies: policy entropies H(π_θ(·|sᵢ)), shape `[...]`.
      value_coef: c_v >= 0, scalar (may be traced).
      entropy_coef: c_H >= 0, scalar (may be traced).
      weights: per-sample weights broadcastable to `[...]`, or None.
      reduction: "mean", "sum" or "none" (per-sample `[...]`).

    Returns:
      `(loss, metrics)`: the three terms' metrics (`pg_loss`, `value_loss`,
      `value_explained_variance`, `entropy_mean`) and `a2c_loss` (the weighted mean total).
    """
    fn = "a2c_loss"
    dtype, (log_probs, advantages, values, targets, entropies) = _batch(fn, {
        "log_probs": log_probs, "advantages": advantages, "values": values,
        "targets": targets, "entropies": entropies}, reduction)
    value_coef, entropy_coef = _coefficients(fn, value_coef, entropy_coef, dtype)
    kw = {"weights": weights, "reduction": reduction}
    terms = (
        policy_gradient_loss(log_probs, advantages, **kw),
        value_loss(values, targets, **kw),
        entropy_bonus(entropies, **kw),
    )
    return _total(fn, terms, ("pg_loss", "value_loss", "entropy_mean"), value_coef,
                  entropy_coef, reduction)


def ppo_loss(
    *,
    log_probs: Array,
    old_log_probs: Array,
    advantages: Array,
    values: Array,
    targets: Array,
    entropies: Array,
    clip_eps: Numeric,
    value_coef: Numeric,
    entropy_coef: Numeric,
    old_values: Array | None = None,
    value_clip_eps: Numeric | None = None,
    weights: Any = None,
    reduction: str = "mean",
) -> tuple[Array, Metrics]:
    """Computes the PPO loss: clipped surrogate, value loss and entropy bonus (by keyword).

      L = L_clip(θ) + c_v L_V(φ) - c_H B(θ),

    with `L_clip = ppo_clip_loss(log_probs, old_log_probs, advantages, clip_eps=clip_eps)`,
    `L_V = value_loss(values, targets, old_values, clip_eps=value_clip_eps)` (clipped only
    when `value_clip_eps` is given) and `B = entropy_bonus(entropies)`, each with the same
    `weights` and `reduction` (with "none", the per-sample total). See "Proximal Policy
    Optimization Algorithms", Schulman et al. (https://arxiv.org/abs/1707.06347).

    Args:
      log_probs: log π_θ(aᵢ|sᵢ) under the current policy, shape `[...]`.
      old_log_probs: log π_old(aᵢ|sᵢ) under the behaviour policy, shape `[...]`; receive no
        gradient.
      advantages: advantage estimates Aᵢ, shape `[...]`; receive no gradient.
      values: V_φ(sᵢ), shape `[...]`.
      targets: value targets Gᵢ, shape `[...]`; receive no gradient.
      entropies: policy entropies H(π_θ(·|sᵢ)), shape `[...]`.
      clip_eps: policy clipping range ε > 0, scalar (may be traced).
      value_coef: c_v >= 0, scalar (may be traced).
      entropy_coef: c_H >= 0, scalar (may be traced).
      old_values: V_old(sᵢ) recorded with the data, shape `[...]`, or None; receive no
        gradient. Needed only with `value_clip_eps`.
      value_clip_eps: value clipping range > 0, scalar (may be traced), or None for an
        unclipped value loss.
      weights: per-sample weights broadcastable to `[...]`, or None.
      reduction: "mean", "sum" or "none" (per-sample `[...]`).

    Returns:
      `(loss, metrics)`: the three terms' metrics (`clip_loss`, `clip_fraction`,
      `clip_approx_kl`, `clip_ratio_mean`, `value_loss`, `value_explained_variance`,
      `entropy_mean`, and `value_clip_fraction` when clipping values) and `ppo_loss` (the
      weighted mean total).

    Raises:
      ValueError: `value_clip_eps` is given without `old_values`.
    """
    fn = "ppo_loss"
    if value_clip_eps is not None and old_values is None:
        raise ValueError(
            f"{fn}: got value_clip_eps but old_values is None; value clipping needs the "
            "values recorded with the data: pass old_values, or value_clip_eps=None for an "
            "unclipped value loss"
        )
    named = {"log_probs": log_probs, "old_log_probs": old_log_probs, "advantages": advantages,
             "values": values, "targets": targets, "entropies": entropies}
    if old_values is not None:
        named["old_values"] = old_values
    dtype, arrays = _batch(fn, named, reduction)
    log_probs, old_log_probs, advantages, values, targets, entropies = arrays[:6]
    value_coef, entropy_coef = _coefficients(fn, value_coef, entropy_coef, dtype)
    for name, eps in (("clip_eps", clip_eps), ("value_clip_eps", value_clip_eps)):
        if eps is not None:  # checked here so that errors name ppo_loss's arguments
            checks.hyperparameter(fn, name, eps, dtype, low=0.0, low_open=True, example="0.2")
    kw = {"weights": weights, "reduction": reduction}
    clip = ppo_clip_loss(log_probs, old_log_probs, advantages, clip_eps=clip_eps, **kw)
    if value_clip_eps is None:
        vf = value_loss(values, targets, **kw)
    else:
        vf = value_loss(values, targets, arrays[6], clip_eps=value_clip_eps, **kw)
    terms = (clip, vf, entropy_bonus(entropies, **kw))
    return _total(fn, terms, ("clip_loss", "value_loss", "entropy_mean"), value_coef,
                  entropy_coef, reduction)


def normalize_advantages(
    advantages: Array,
    *,
    eps: Numeric = 1e-8,
    weights: Any = None,
    axis_name: str | None = None,
) -> Array:
    """Standardises advantages over the whole batch.

      Âᵢ = (Aᵢ - mean_w[A]) / (std_w[A] + eps),

    with the (weighted, population) mean and standard deviation. Zero-weight samples do not
    enter the moments but are standardised too; where all weights are 0 the advantages come
    back unchanged.

    Args:
      advantages: advantage estimates, shape `[...]`, float.
      eps: scalar > 0 added to the standard deviation.
      weights: per-sample weights broadcastable to `[...]`, or None.
      axis_name: a mapped axis the batch is split along in equal-sized shards (data
        parallelism); the moments are then those of the global batch.

    Returns:
      Normalised advantages, shape `[...]`, in the canonical dtype of `advantages`.
    """
    fn = "normalize_advantages"
    dtype, (advantages,) = _batch(fn, {"advantages": advantages})
    eps = checks.hyperparameter(fn, "eps", eps, dtype, low=0.0, low_open=True, example="1e-8")
    if weights is None:
        mean = collectives.mean(jnp.mean(advantages), axis_name)
        var = collectives.mean(jnp.mean(jnp.square(advantages - mean)), axis_name)
        return (advantages - mean) / (_std(var) + eps)
    w = _weights_like(fn, weights, advantages)
    norm = collectives.total(jnp.sum(w), axis_name)
    safe_norm = jnp.where(norm > 0, norm, jnp.ones_like(norm))
    mean = collectives.total(jnp.sum(w * advantages), axis_name) / safe_norm
    var = collectives.total(jnp.sum(w * jnp.square(advantages - mean)), axis_name) / safe_norm
    return jnp.where(norm > 0, (advantages - mean) / (_std(var) + eps), advantages)


def _std(var: Array) -> Array:
    """sqrt(var), with a zero (not NaN) gradient where var == 0 (a constant batch)."""
    positive = var > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, var, jnp.ones_like(var))),
                     jnp.zeros_like(var))
