"""Actor-critic losses as pure functions.

Every loss takes flat batches: arrays of one common shape `[...]` (`[N]`,
`[T, B]`, ...), whose elements are independent samples. The reduction is the
mean over all elements. Each loss returns `(loss, metrics)`, where `loss` is a
scalar to minimise and `metrics` is a `dict[str, Array]` of scalars, ready to be
used as the auxiliary output of `jax.value_and_grad(..., has_aux=True)`.

Quantities that act as fixed regression targets or fixed weights (advantages,
value targets, behaviour log-probabilities, behaviour values) are wrapped in
`stop_gradient`: gradients flow only into the current policy's log-probabilities,
the current values and the current entropies.

Hyperparameters (`clip_eps`, `value_coef`, `entropy_coef`, ...) are scalars and
may be traced, for instance vmapped over in a hyperparameter sweep.
"""

import chex
import jax
import jax.numpy as jnp

from acjax.core import collectives

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


def _check_batch(arrays: list[Array]) -> None:
    """Static checks shared by all losses: float inputs of one common shape."""
    chex.assert_type(arrays, float)
    chex.assert_equal_shape(arrays)


def _scalar(x: Numeric, dtype) -> Array:
    """A (possibly traced) hyperparameter as a rank-0 array of `dtype`."""
    x = jnp.asarray(x, dtype)
    chex.assert_rank(x, 0)
    return x


# ----------------------------------------------------------------------------
# On-policy losses
# ----------------------------------------------------------------------------


def policy_gradient_loss(log_probs: Array, advantages: Array) -> tuple[Array, Metrics]:
    """Computes the vanilla (REINFORCE / advantage actor-critic) policy loss.

      L(θ) = -mean[ sg(Aᵢ) log π_θ(aᵢ|sᵢ) ],

    where `sg` is `stop_gradient`, so ∇L = -mean[Aᵢ ∇ log π_θ(aᵢ|sᵢ)].

    See "Simple Statistical Gradient-Following Algorithms for Connectionist
    Reinforcement Learning", Williams (1992).

    Args:
      log_probs: log π_θ(aᵢ|sᵢ) of the taken actions, shape `[...]`.
      advantages: advantage estimates Aᵢ, shape `[...]`; receive no gradient.

    Returns:
      `(loss, metrics)`: the scalar loss and `{"policy_loss"}`.
    """
    _check_batch([log_probs, advantages])
    advantages = jax.lax.stop_gradient(advantages)
    loss = -jnp.mean(advantages * log_probs)
    return loss, {"policy_loss": loss}


def ppo_clip_loss(
    log_probs: Array,
    old_log_probs: Array,
    advantages: Array,
    clip_eps: Numeric,
) -> tuple[Array, Metrics]:
    """Computes the PPO clipped surrogate policy loss.

      rᵢ = exp(log π_θ(aᵢ|sᵢ) - log π_old(aᵢ|sᵢ)),
      L(θ) = -mean[ min(rᵢ Aᵢ, clip(rᵢ, 1 - ε, 1 + ε) Aᵢ) ].

    The minimum makes the objective a pessimistic bound: once the ratio has
    moved beyond `1 ± ε` in the direction the advantage favours, the sample
    contributes no gradient.

    See "Proximal Policy Optimization Algorithms", Schulman et al.
    (https://arxiv.org/abs/1707.06347).

    Args:
      log_probs: log π_θ(aᵢ|sᵢ) under the current policy, shape `[...]`.
      old_log_probs: log π_old(aᵢ|sᵢ) under the behaviour policy, shape `[...]`;
        receive no gradient.
      advantages: advantage estimates Aᵢ, shape `[...]`; receive no gradient.
      clip_eps: scalar clipping range ε (may be traced).

    Returns:
      `(loss, metrics)`: the scalar loss and the scalars
        * `policy_loss`: the loss;
        * `clip_fraction`: mean[|rᵢ - 1| > ε];
        * `approx_kl`: mean[(rᵢ - 1) - log rᵢ], a low-variance, non-negative
          estimate of KL(π_old ‖ π_θ);
        * `ratio_mean`: mean[rᵢ].
    """
    _check_batch([log_probs, old_log_probs, advantages])
    eps = _scalar(clip_eps, log_probs.dtype)
    advantages = jax.lax.stop_gradient(advantages)
    log_ratio = log_probs - jax.lax.stop_gradient(old_log_probs)
    ratio = jnp.exp(log_ratio)
    clipped_ratio = jnp.clip(ratio, 1.0 - eps, 1.0 + eps)
    objective = jnp.minimum(ratio * advantages, clipped_ratio * advantages)
    loss = -jnp.mean(objective)

    log_ratio = jax.lax.stop_gradient(log_ratio)
    ratio = jax.lax.stop_gradient(ratio)
    metrics = {
        "policy_loss": loss,
        "clip_fraction": jnp.mean((jnp.abs(ratio - 1.0) > eps).astype(log_probs.dtype)),
        "approx_kl": jnp.mean((ratio - 1.0) - log_ratio),
        "ratio_mean": jnp.mean(ratio),
    }
    return loss, metrics


def _explained_variance(values: Array, targets: Array) -> Array:
    """1 - Var[targets - values] / Var[targets]; 0 where Var[targets] == 0."""
    var_targets = jnp.var(targets)
    var_residual = jnp.var(targets - values)
    positive = var_targets > 0
    safe_var = jnp.where(positive, var_targets, jnp.ones_like(var_targets))
    return jnp.where(positive, 1.0 - var_residual / safe_var, jnp.zeros_like(var_targets))


def value_loss(
    values: Array,
    targets: Array,
    old_values: Array | None = None,
    clip_eps: Numeric | None = None,
) -> tuple[Array, Metrics]:
    """Computes the (optionally clipped) squared-error value loss.

    Without clipping:

      L(φ) = ½ mean[ (V_φ(sᵢ) - Gᵢ)² ].

    With `old_values` and `clip_eps` (PPO value clipping):

      Vᶜᵢ  = V_old(sᵢ) + clip(V_φ(sᵢ) - V_old(sᵢ), -ε, ε),
      L(φ) = ½ mean[ max((V_φ(sᵢ) - Gᵢ)², (Vᶜᵢ - Gᵢ)²) ].

    Args:
      values: V_φ(sᵢ) from the current critic, shape `[...]`.
      targets: value targets Gᵢ (returns), shape `[...]`; receive no gradient.
      old_values: V_old(sᵢ) from the critic that collected the data, shape
        `[...]`; receive no gradient. Give together with `clip_eps`.
      clip_eps: scalar clipping range ε (may be traced). Give together with
        `old_values`.

    Returns:
      `(loss, metrics)`: the scalar loss and the scalars
        * `value_loss`: the loss;
        * `explained_variance`: 1 - Var[G - V] / Var[G] (0 when Var[G] = 0);
        * `value_clip_fraction`: mean[|V_φ - V_old| > ε] (only when clipping).

    Raises:
      ValueError: if only one of `old_values` and `clip_eps` is given.
    """
    if (old_values is None) != (clip_eps is None):
        given, missing = ("old_values", "clip_eps") if clip_eps is None else (
            "clip_eps", "old_values")
        raise ValueError(
            f"value_loss: got {given} but not {missing}. Value clipping needs both "
            "old_values and clip_eps; pass both to clip the value loss, or neither "
            "for the unclipped squared error."
        )
    if old_values is None:
        _check_batch([values, targets])
    else:
        _check_batch([values, targets, old_values])
    targets = jax.lax.stop_gradient(targets)
    squared_error = jnp.square(values - targets)
    metrics: Metrics = {}
    if old_values is None:
        loss = 0.5 * jnp.mean(squared_error)
    else:
        eps = _scalar(clip_eps, values.dtype)
        old_values = jax.lax.stop_gradient(old_values)
        delta = values - old_values
        clipped_values = old_values + jnp.clip(delta, -eps, eps)
        clipped_squared_error = jnp.square(clipped_values - targets)
        loss = 0.5 * jnp.mean(jnp.maximum(squared_error, clipped_squared_error))
        metrics["value_clip_fraction"] = jnp.mean(
            (jnp.abs(jax.lax.stop_gradient(delta)) > eps).astype(values.dtype)
        )
    metrics["value_loss"] = loss
    metrics["explained_variance"] = _explained_variance(jax.lax.stop_gradient(values), targets)
    return loss, metrics


def entropy_bonus(entropies: Array) -> tuple[Array, Metrics]:
    """Computes the entropy bonus, a quantity to add to the objective.

      B(θ) = mean[ H(π_θ(·|sᵢ)) ].

    Maximising B (subtracting `coef * B` from a loss) keeps the policy from
    collapsing prematurely onto a single action.

    Args:
      entropies: per-state policy entropies H(π_θ(·|sᵢ)), shape `[...]`.

    Returns:
      `(bonus, metrics)`: the scalar bonus and `{"entropy"}` (the bonus).
    """
    _check_batch([entropies])
    bonus = jnp.mean(entropies)
    return bonus, {"entropy": bonus}


def a2c_loss(
    log_probs: Array,
    advantages: Array,
    values: Array,
    targets: Array,
    entropies: Array,
    *,
    value_coef: Numeric,
    entropy_coef: Numeric,
) -> tuple[Array, Metrics]:
    """Computes the advantage actor-critic (A2C / A3C) loss.

      L = L_pg(θ) + c_v L_V(φ) - c_H B(θ),

    with `L_pg = policy_gradient_loss(log_probs, advantages)`,
    `L_V = value_loss(values, targets)` and `B = entropy_bonus(entropies)`.

    See "Asynchronous Methods for Deep Reinforcement Learning", Mnih et al.
    (https://arxiv.org/abs/1602.01783).

    Args:
      log_probs: log π_θ(aᵢ|sᵢ) of the taken actions, shape `[...]`.
      advantages: advantage estimates Aᵢ, shape `[...]`; receive no gradient.
      values: V_φ(sᵢ), shape `[...]`.
      targets: value targets Gᵢ, shape `[...]`; receive no gradient.
      entropies: policy entropies H(π_θ(·|sᵢ)), shape `[...]`.
      value_coef: scalar weight c_v of the value loss (may be traced).
      entropy_coef: scalar weight c_H of the entropy bonus (may be traced).

    Returns:
      `(loss, metrics)`: the scalar total loss and the metrics of the three
      parts (`policy_loss`, `value_loss`, `explained_variance`, `entropy`) plus
      `total_loss`.
    """
    _check_batch([log_probs, advantages, values, targets, entropies])
    dtype = log_probs.dtype
    value_coef = _scalar(value_coef, dtype)
    entropy_coef = _scalar(entropy_coef, dtype)
    pg, pg_metrics = policy_gradient_loss(log_probs, advantages)
    vf, vf_metrics = value_loss(values, targets)
    ent, ent_metrics = entropy_bonus(entropies)
    total = pg + value_coef * vf - entropy_coef * ent
    metrics = {**pg_metrics, **vf_metrics, **ent_metrics, "policy_loss": pg, "total_loss": total}
    return total, metrics


def ppo_loss(
    log_probs: Array,
    old_log_probs: Array,
    advantages: Array,
    values: Array,
    old_values: Array,
    targets: Array,
    entropies: Array,
    *,
    clip_eps: Numeric,
    value_coef: Numeric,
    entropy_coef: Numeric,
    value_clip_eps: Numeric | None = None,
) -> tuple[Array, Metrics]:
    """Computes the PPO loss: clipped surrogate, value loss and entropy bonus.

      L = L_clip(θ) + c_v L_V(φ) - c_H B(θ),

    with `L_clip = ppo_clip_loss(log_probs, old_log_probs, advantages, clip_eps)`,
    `L_V = value_loss(values, targets, old_values, value_clip_eps)` (clipped only
    when `value_clip_eps` is given) and `B = entropy_bonus(entropies)`.

    See "Proximal Policy Optimization Algorithms", Schulman et al.
    (https://arxiv.org/abs/1707.06347).

    Args:
      log_probs: log π_θ(aᵢ|sᵢ) under the current policy, shape `[...]`.
      old_log_probs: log π_old(aᵢ|sᵢ) under the behaviour policy, shape `[...]`;
        receive no gradient.
      advantages: advantage estimates Aᵢ, shape `[...]`; receive no gradient.
      values: V_φ(sᵢ), shape `[...]`.
      old_values: V_old(sᵢ) recorded with the data, shape `[...]`; receive no
        gradient (used only when `value_clip_eps` is given).
      targets: value targets Gᵢ, shape `[...]`; receive no gradient.
      entropies: policy entropies H(π_θ(·|sᵢ)), shape `[...]`.
      clip_eps: scalar policy clipping range ε (may be traced).
      value_coef: scalar weight c_v of the value loss (may be traced).
      entropy_coef: scalar weight c_H of the entropy bonus (may be traced).
      value_clip_eps: scalar value clipping range (may be traced), or None for
        an unclipped value loss.

    Returns:
      `(loss, metrics)`: the scalar total loss and the metrics of the three
      parts (`policy_loss`, `clip_fraction`, `approx_kl`, `ratio_mean`,
      `value_loss`, `explained_variance`, `entropy`, and `value_clip_fraction`
      when clipping values) plus `total_loss`.
    """
    _check_batch([log_probs, old_log_probs, advantages, values, old_values, targets, entropies])
    dtype = log_probs.dtype
    value_coef = _scalar(value_coef, dtype)
    entropy_coef = _scalar(entropy_coef, dtype)
    pg, pg_metrics = ppo_clip_loss(log_probs, old_log_probs, advantages, clip_eps)
    if value_clip_eps is None:
        vf, vf_metrics = value_loss(values, targets)
    else:
        vf, vf_metrics = value_loss(values, targets, old_values, value_clip_eps)
    ent, ent_metrics = entropy_bonus(entropies)
    total = pg + value_coef * vf - entropy_coef * ent
    metrics = {**pg_metrics, **vf_metrics, **ent_metrics, "policy_loss": pg, "total_loss": total}
    return total, metrics


def normalize_advantages(
    advantages: Array, eps: Numeric = 1e-8, *, axis_name: str | None = None
) -> Array:
    """Standardises advantages over the whole batch.

      Âᵢ = (Aᵢ - mean[A]) / (std[A] + eps).

    Args:
      advantages: advantage estimates, shape `[...]`, float.
      eps: scalar added to the (population) standard deviation.
      axis_name: a mapped axis the batch is split along in equal-sized shards (data
        parallelism); the mean and standard deviation are then those of the global batch.

    Returns:
      Normalised advantages, shape `[...]`, dtype of `advantages`.
    """
    _check_batch([advantages])
    eps = _scalar(eps, advantages.dtype)
    mean = collectives.mean(jnp.mean(advantages), axis_name)
    var = collectives.mean(jnp.mean(jnp.square(advantages - mean)), axis_name)
    return (advantages - mean) / (jnp.sqrt(var) + eps)
