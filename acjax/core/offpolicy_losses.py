"""Off-policy actor-critic losses as pure functions: the building blocks of DDPG, TD3 and SAC.

Transitions (s_tm1, a_tm1, r_t, terminated_t, s_t) come in any batch shape `[...]` (`[N]`,
`[T, B]`, ...). K critics (twin critics: K = 2) sit on the axis named by the keyword
`ensemble_axis` (0: `[K, ...]`); it is never guessed from shapes. Each loss takes `weights` and
`reduction` and returns `(loss, metrics)` as the on-policy ones in `acjax.core.losses` do, with
metric names prefixed `critic_`, `dpg_`, `sac_actor_` and `temperature_`; `polyak_update`, the
targets and `target_policy_smoothing` return arrays. Hyperparameters are keyword-only scalars
(traced values pass; concrete ones are range-checked). Episode-end flags are bool (or 0/1
integers); a terminated step ignores its next-state values (`jnp.where`), so a NaN there stays
out of the target.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

from acjax.core import checks
from acjax.core.losses import Array, Metrics, Numeric

__all__ = [
    "bellman_target",
    "critic_loss",
    "dpg_actor_loss",
    "polyak_update",
    "sac_actor_loss",
    "sac_target",
    "target_policy_smoothing",
    "td3_target",
    "temperature_loss",
]

_sg = jax.lax.stop_gradient


def _ensemble_axis(fn: str, name: str, x: Any, ensemble_axis: Any) -> int:
    """`ensemble_axis` as a non-negative axis of `x` holding at least one critic."""
    if isinstance(ensemble_axis, bool) or not isinstance(ensemble_axis, (int, np.integer)):
        raise TypeError(
            f"{fn}: ensemble_axis={ensemble_axis!r}; pass the int axis of {name} that holds "
            "the K critics (e.g. ensemble_axis=0 for [K, ...]), or None for a single critic"
        )
    shape = np.shape(x)
    if not -len(shape) <= ensemble_axis < len(shape):
        raise ValueError(
            f"{fn}: ensemble_axis={ensemble_axis} is not an axis of {name}, shape {shape}; "
            f"pass {name} with its K critics on that axis"
        )
    axis = int(ensemble_axis) % len(shape)
    if shape[axis] == 0:
        raise ValueError(f"{fn}: {name} has shape {shape}, no critic on ensemble_axis={axis}")
    return axis


def _without_axis(x: Any, axis: int | None, dtype) -> jax.ShapeDtypeStruct:
    """The shape of `x` without its ensemble axis, for shape checks."""
    shape = tuple(np.shape(x))
    return jax.ShapeDtypeStruct(shape if axis is None else shape[:axis] + shape[axis + 1:],
                                dtype)


def _critics(
    fn: str, name: str, q: Any, ensemble_axis: Any, like: dict[str, Any], dtype,
    hint: str = "", q_first: bool = False,
) -> tuple[Array, int | None]:
    """`q` checked against the per-sample arrays `like` (listed after them in errors, or
    before with `q_first`), as `dtype`, and its ensemble axis."""
    axis = None if ensemble_axis is None else _ensemble_axis(fn, name, q, ensemble_axis)
    label = name if axis is None else f"{name} without ensemble_axis={axis}"
    hint = hint or (f"with K critics pass ensemble_axis (0 for {name} of shape [K, ...])"
                    if axis is None else f"{name} holds its K critics on ensemble_axis={axis}")
    q_shape = {label: _without_axis(q, axis, dtype)}
    named = {**q_shape, **like} if q_first else {**like, **q_shape}
    shape = checks.check_same_shape(fn, named, hint)
    checks.check_nonempty(fn, next(iter(like)), shape)
    return checks.as_float(q, dtype), axis


def polyak_update(online_params: Any, target_params: Any, *, tau: Numeric) -> Any:
    """Moves target parameters towards online ones (Polyak averaging).

      θ' ← τ θ + (1 - τ) θ',

    leaf by leaf over matching pytrees. τ = 1 copies the online parameters, τ = 0 leaves the
    target unchanged; DDPG/TD3/SAC use τ ≈ 0.005 per update. Not a loss: returns only the new
    target parameters.

    Args:
      online_params: pytree θ of float arrays.
      target_params: pytree θ' with the structure and shapes of `online_params`.
      tau: τ in [0, 1], scalar (may be traced).

    Returns:
      The new target parameters, with the structure and dtypes of `target_params`.

    Raises:
      ValueError: a concrete `tau` outside [0, 1], or leaves of different shapes.
      TypeError: a leaf that is not floating point.
    """
    fn = "polyak_update"
    checks.hyperparameter(fn, "tau", tau, np.dtype(np.float32), low=0.0, high=1.0,
                          example="0.005")

    def update(path, online, target):
        leaf = jax.tree_util.keystr(path)
        named = {f"online_params{leaf}": online, f"target_params{leaf}": target}
        checks.float_dtype(fn, named)
        checks.check_same_shape(fn, named)
        t = jnp.asarray(tau, target.dtype)
        return (t * online + (1.0 - t) * target).astype(target.dtype)

    return jax.tree_util.tree_map_with_path(update, online_params, target_params)


def _bootstrap(
    fn: str, r_t: Any, terminated_t: Any, q_t: Any, gamma: Numeric, ensemble_axis: Any = None,
    log_prob_t: Any = None, alpha: Numeric | None = None,
) -> Array:
    """`r_t + γ (min_k q_t - α log_prob_t)` where not terminated, else `r_t`."""
    named = {"r_t": r_t, "q_t": q_t}
    if log_prob_t is not None:
        named["log_prob_t"] = log_prob_t
    dtype = checks.float_dtype(fn, named)
    terminated_t = checks.as_flags(fn, "terminated_t", terminated_t)
    like = {"r_t": r_t, "terminated_t": terminated_t}
    if log_prob_t is not None:
        like["log_prob_t"] = log_prob_t
    hint = ("bellman_target takes one critic: pass min_k q_t, or use td3_target with "
            "ensemble_axis" if fn == "bellman_target" else "")
    q_t, axis = _critics(fn, "q_t", q_t, ensemble_axis, like, dtype, hint)
    gamma = checks.hyperparameter(fn, "gamma", gamma, dtype, low=0.0, high=1.0, example="0.99")
    next_value = q_t if axis is None else jnp.min(q_t, axis=axis)
    if log_prob_t is not None:
        alpha = checks.hyperparameter(fn, "alpha", alpha, dtype, low=0.0, example="0.2")
        next_value = next_value - alpha * checks.as_float(log_prob_t, dtype)
    r_t = checks.as_float(r_t, dtype)
    # Terminated steps' values are replaced before the product (NaN times 0 is NaN); the product
    # keeps its form `r + (γ (1 - d)) v`, so XLA fuses it (multiply-add) as before, bit for bit.
    next_value = jnp.where(terminated_t, jnp.zeros_like(next_value), next_value)
    return r_t + gamma * (1.0 - terminated_t.astype(dtype)) * next_value


def bellman_target(r_t: Array, terminated_t: Array, q_t: Array, *, gamma: Numeric) -> Array:
    """Computes the one-step bootstrapped target for Q(s_tm1, a_tm1) of one critic.

      yᵢ = r_tᵢ + γ q_tᵢ where not terminated_tᵢ, else r_tᵢ.

    Only TERMINATION stops bootstrapping, never `done`: a transition cut off by a time limit
    (truncated, not terminated) still bootstraps, from the value of the TRUE next observation
    (gymnax's `info["final_observation"]`, not the observation the environment reset to). A
    terminated step ignores `q_t` (`jnp.where`: a NaN there stays out of y). A per-transition
    discount γᵢ (e.g. γⁿ of n-step transitions) is `bellman_target(r_t, terminated_t, γᵢ q_t,
    gamma=1.0)`.

    Args:
      r_t: rewards, shape `[...]`, float.
      terminated_t: True where s_t is terminal, shape `[...]`, bool (or 0/1 integers).
      q_t: the already reduced value of the next state (e.g. Q'(s_t, μ'(s_t))), shape `[...]`.
      gamma: γ in [0, 1], scalar (may be traced).

    Returns:
      Targets y, shape `[...]`, in the promoted dtype of `r_t` and `q_t`. They are not
      stop-gradiented; `critic_loss` does that.
    """
    return _bootstrap("bellman_target", r_t, terminated_t, q_t, gamma)


def td3_target(
    r_t: Array, terminated_t: Array, q_t: Array, *, gamma: Numeric, ensemble_axis: int | None
) -> Array:
    """Computes TD3's clipped double-Q target.

      yᵢ = r_tᵢ + γ min_k q_t[k, i] where not terminated_tᵢ, else r_tᵢ.

    See "Addressing Function Approximation Error in Actor-Critic Methods", Fujimoto et al.
    (https://arxiv.org/abs/1802.09477). Termination, truncation and NaNs as in `bellman_target`.

    Args:
      r_t: rewards, shape `[...]`, float.
      terminated_t: True where s_t is terminal, shape `[...]`, bool (or 0/1 integers).
      q_t: the K target critics' values Q'_k(s_t, ã_t) at the (smoothed) target action, with
        the critics on `ensemble_axis` (`[K, ...]` for 0) and `[...]` otherwise.
      gamma: γ in [0, 1], scalar (may be traced).
      ensemble_axis: the int axis of `q_t` holding the K critics (required; None: one
        critic shaped like `r_t`).

    Returns:
      Targets y, shape `[...]`, in the promoted dtype of `r_t` and `q_t`.
    """
    return _bootstrap("td3_target", r_t, terminated_t, q_t, gamma, ensemble_axis)


def sac_target(
    r_t: Array,
    terminated_t: Array,
    q_t: Array,
    log_prob_t: Array,
    *,
    gamma: Numeric,
    alpha: Numeric,
    ensemble_axis: int | None,
) -> Array:
    """Computes SAC's soft clipped double-Q target.

      yᵢ = r_tᵢ + γ (min_k q_t[k, i] - α log π(a_tᵢ|s_tᵢ)) where not terminated_tᵢ, else r_tᵢ,

    with a_t ~ π(·|s_t) freshly sampled at the next state. See "Soft Actor-Critic Algorithms
    and Applications", Haarnoja et al. (https://arxiv.org/abs/1812.05905). Termination, truncation and NaNs as in `bellman_target`.

    Args:
      r_t: rewards, shape `[...]`, float.
      terminated_t: True where s_t is terminal, shape `[...]`, bool (or 0/1 integers).
      q_t: the target critics' values Q'_k(s_t, a_t), critics on `ensemble_axis`.
      log_prob_t: log π(a_t|s_t) of the sampled next actions, shape `[...]`.
      gamma: γ in [0, 1], scalar (may be traced).
      alpha: the temperature α >= 0, scalar (may be traced).
      ensemble_axis: the int axis of `q_t` holding the K critics (required; None: one
        critic shaped like `r_t`).

    Returns:
      Targets y, shape `[...]`, in the promoted dtype of `r_t`, `q_t` and `log_prob_t`.
    """
    return _bootstrap("sac_target", r_t, terminated_t, q_t, gamma, ensemble_axis, log_prob_t,
                      alpha)


def target_policy_smoothing(
    action_t: Array,
    key: chex.PRNGKey,
    *,
    noise_std: Numeric,
    noise_clip: Numeric,
    low: Numeric | Array = -1.0,
    high: Numeric | Array = 1.0,
) -> Array:
    """Adds TD3's clipped Gaussian noise to target actions.

      ãᵢ = clip(μ'(s_t)ᵢ + clip(εᵢ, -c, c), low, high),   εᵢ ~ N(0, σ² I).

    Args:
      action_t: target-policy actions μ'(s_t), shape `[..., D]`, float.
      key: a PRNG key.
      noise_std: σ >= 0, scalar (may be traced); TD3 uses 0.2 (for actions in [-1, 1]).
      noise_clip: c >= 0, scalar (may be traced); TD3 uses 0.5.
      low: lower action bound, a scalar or `[D]` (default -1).
      high: upper action bound, a scalar or `[D]` (default 1).

    Returns:
      Smoothed actions ã, shape `[..., D]`, in the canonical dtype of `action_t`.
    """
    fn = "target_policy_smoothing"
    dtype = checks.float_dtype(fn, {"action_t": action_t})
    if np.ndim(action_t) < 1:
        raise ValueError(f"{fn}: action_t has shape (); pass actions of shape [..., D]")
    checks.check_nonempty(fn, "action_t", np.shape(action_t))
    std = checks.hyperparameter(fn, "noise_std", noise_std, dtype, low=0.0, example="0.2")
    clip = checks.hyperparameter(fn, "noise_clip", noise_clip, dtype, low=0.0, example="0.5")
    action_t = checks.as_float(action_t, dtype)
    bounds = {}
    for name, bound in (("low", low), ("high", high)):
        if np.ndim(bound) > 1 or np.shape(bound) not in ((), action_t.shape[-1:]):
            raise ValueError(f"{fn}: {name} has shape {np.shape(bound)}; pass a scalar or "
                             f"one bound per action component, shape {action_t.shape[-1:]}")
        bounds[name] = jnp.broadcast_to(jnp.asarray(bound, dtype), action_t.shape)
    noise = jnp.clip(std * jax.random.normal(key, action_t.shape, dtype), -clip, clip)
    return jnp.clip(action_t + noise, bounds["low"], bounds["high"])


def critic_loss(
    q_tm1: Array,
    target: Array,
    *,
    ensemble_axis: int | None = None,
    weights: Any = None,
    reduction: str = "mean",
) -> tuple[Array, Metrics]:
    """Computes the squared TD-error loss of one or K critics.

      lᵢ = Σ_k ½ (Q_φk(s_tm1ᵢ, a_tm1ᵢ) - sg(yᵢ))²,   L(φ) = reduce_w(l).

    Every critic regresses on the same target y (stop-gradient: no gradient reaches the target
    networks or the next-state policy). The K critics' losses are SUMMED, not averaged, so that
    each critic's gradient is that of its own ½ mean squared error whatever K is.

    Args:
      q_tm1: Q_φk(s_tm1, a_tm1): shape `[...]` (one critic, `ensemble_axis=None`) or with K
        critics on `ensemble_axis` (`[K, ...]` for 0), float.
      target: targets y (e.g. from `td3_target` or `sac_target`), shape `[...]`.
      ensemble_axis: the int axis of `q_tm1` holding the critics, or None for one critic.
      weights: per-sample weights broadcastable to `[...]`, or None.
      reduction: "mean", "sum" or "none" (per-sample `[...]`, summed over critics).

    Returns:
      `(loss, metrics)` with the weighted means
        * `critic_loss`: the loss;
        * `critic_q_mean`: of q_tm1 over critics and batch;
        * `critic_target_mean`: of y;
        * `critic_td_error_abs`: of |q_tm1 - y| over critics and batch.
    """
    fn = "critic_loss"
    checks.check_reduction(fn, reduction)
    dtype = checks.float_dtype(fn, {"q_tm1": q_tm1, "target": target})
    q, axis = _critics(fn, "q_tm1", q_tm1, ensemble_axis, {"target": target}, dtype,
                       q_first=True)
    q = q[None] if axis is None else jnp.moveaxis(q, axis, 0)  # [K, ...]
    target = _sg(checks.as_float(target, dtype))
    td_error = q - target[None]
    squared_error = jnp.square(td_error)
    per_critic = jax.vmap(lambda x: checks.reduce(fn, x, weights, reduction))(squared_error)
    loss = jnp.sum(0.5 * per_critic, axis=0)
    mean_loss = (checks.metric(loss) if reduction == "mean" else
                 0.5 * q.shape[0] * checks.weighted_mean(squared_error, weights))
    metrics = {
        "critic_loss": mean_loss,
        "critic_q_mean": checks.weighted_mean(q, weights),
        "critic_target_mean": checks.weighted_mean(target, weights),
        "critic_td_error_abs": checks.weighted_mean(jnp.abs(td_error), weights),
    }
    return loss, metrics


def dpg_actor_loss(
    action: Array,
    dq_da: Array,
    *,
    dq_da_clipping: Numeric | None = None,
    weights: Any = None,
    reduction: str = "mean",
) -> tuple[Array, Metrics]:
    """Computes the deterministic policy gradient loss (DDPG, TD3).

      lᵢ = ½ Σ_d (sg(aᵢ + ∂Q/∂aᵢ) - aᵢ)²_d,   aᵢ = μ_θ(sᵢ),   L(θ) = reduce_w(l),

    whose value is ½ mean_i |∂Q/∂aᵢ|² and whose gradient with respect to the actions is
    ∂L/∂aᵢ = -(∂Q/∂aᵢ) / N (unweighted mean): descending it ascends Q along
    ∇_θ μ_θ(s) ∂Q/∂a, as -mean Q(s, μ_θ(s)) would, but the critic gets no gradient by
    construction. This is rlax's `dpg_loss` (elementwise, shape `[D]` per example) summed over
    the action components and reduced over the batch.

    The caller computes `dq_da` as the gradient of the critic with respect to its action
    input, e.g. `jax.vmap(jax.grad(q_fn, argnums=1))(obs, action)` (the first critic for TD3).
    See "Deterministic Policy Gradient Algorithms", Silver et al. (2014), and "Continuous
    control with deep reinforcement learning", Lillicrap et al.
    (https://arxiv.org/abs/1509.02971).

    Args:
      action: μ_θ(sᵢ), shape `[..., D]`, float; the only input that gets a gradient.
      dq_da: ∂Q(sᵢ, a)/∂a at a = μ_θ(sᵢ), shape `[..., D]`, float; stop-gradiented.
      dq_da_clipping: if given (> 0, scalar, may be traced), each row of `dq_da` is rescaled
        to an L2 norm of at most this value (as rlax's `dqda_clipping`).
      weights: per-sample weights broadcastable to the batch shape `[...]`, or None.
      reduction: "mean", "sum" or "none" (per-sample `[...]`).

    Returns:
      `(loss, metrics)` with the weighted means `dpg_loss` (the loss, NOT -mean Q) and
      `dpg_dq_da_norm` (of |∂Q/∂a|₂, before clipping).
    """
    fn = "dpg_actor_loss"
    checks.check_reduction(fn, reduction)
    named = {"action": action, "dq_da": dq_da}
    dtype = checks.float_dtype(fn, named)
    shape = checks.check_same_shape(fn, named)
    if len(shape) < 1:
        raise ValueError(f"{fn}: action and dq_da have shape (); pass shape [..., D]")
    checks.check_nonempty(fn, "action", shape)
    max_norm = None if dq_da_clipping is None else checks.hyperparameter(
        fn, "dq_da_clipping", dq_da_clipping, dtype, low=0.0, low_open=True, example="10.0")
    action = checks.as_float(action, dtype)
    dq_da = _sg(checks.as_float(dq_da, dtype))
    norm = jnp.sqrt(jnp.sum(jnp.square(dq_da), axis=-1))
    if max_norm is not None:
        scale = jnp.minimum(1.0, max_norm / jnp.maximum(norm, jnp.finfo(dtype).tiny))
        dq_da = dq_da * scale[..., None]
    target = _sg(action + dq_da)
    per_sample = 0.5 * jnp.sum(jnp.square(target - action), axis=-1)
    loss = checks.reduce(fn, per_sample, weights, reduction)
    mean_loss = (checks.metric(loss) if reduction == "mean"
                 else checks.weighted_mean(per_sample, weights))
    return loss, {"dpg_loss": mean_loss, "dpg_dq_da_norm": checks.weighted_mean(norm, weights)}


def sac_actor_loss(
    log_prob: Array,
    q_values: Array,
    *,
    alpha: Numeric,
    ensemble_axis: int | None,
    weights: Any = None,
    reduction: str = "mean",
) -> tuple[Array, Metrics]:
    """Computes SAC's policy loss.

      lᵢ = sg(α) log π_θ(aᵢ|sᵢ) - min_k Q_k(sᵢ, aᵢ),   L(θ) = reduce_w(l),

    with aᵢ ~ π_θ(·|sᵢ) reparametrised (e.g. `TanhGaussian.sample_and_log_prob`). Gradients
    flow into log π and, through the reparametrised actions, into the Q values; the caller
    stops gradients into the CRITIC'S PARAMETERS (e.g. evaluates Q with
    `stop_gradient(critic_params)`) so that only the actor learns from this loss. α gets no
    gradient (see `temperature_loss`).

    Args:
      log_prob: log π_θ(aᵢ|sᵢ) of the sampled actions, shape `[...]`, float.
      q_values: Q_k(sᵢ, aᵢ), critics on `ensemble_axis` (`[K, ...]` for 0), float.
      alpha: the temperature α >= 0, scalar (may be traced, e.g. exp(log_alpha)).
      ensemble_axis: the int axis of `q_values` holding the critics (required), or None for
        one critic shaped like `log_prob`.
      weights: per-sample weights broadcastable to `[...]`, or None.
      reduction: "mean", "sum" or "none" (per-sample `[...]`).

    Returns:
      `(loss, metrics)` with the weighted means `sac_actor_loss` (the loss),
      `sac_actor_neg_log_prob` (-log π, a one-sample entropy estimate), `sac_actor_q_mean`
      (min_k Q_k at the policy's actions), and `sac_actor_alpha` (α).
    """
    fn = "sac_actor_loss"
    checks.check_reduction(fn, reduction)
    dtype = checks.float_dtype(fn, {"log_prob": log_prob, "q_values": q_values})
    q, axis = _critics(fn, "q_values", q_values, ensemble_axis, {"log_prob": log_prob}, dtype)
    alpha = _sg(checks.hyperparameter(fn, "alpha", alpha, dtype, low=0.0, example="0.2"))
    log_prob = checks.as_float(log_prob, dtype)
    q_min = q if axis is None else jnp.min(q, axis=axis)
    per_sample = alpha * log_prob - q_min
    loss = checks.reduce(fn, per_sample, weights, reduction)
    metrics = {
        "sac_actor_loss": (checks.metric(loss) if reduction == "mean"
                           else checks.weighted_mean(per_sample, weights)),
        "sac_actor_neg_log_prob": -checks.weighted_mean(log_prob, weights),
        "sac_actor_alpha": checks.metric(alpha),
        "sac_actor_q_mean": checks.weighted_mean(q_min, weights),
    }
    return loss, metrics


def temperature_loss(
    log_alpha: Array,
    log_prob: Array,
    *,
    target_entropy: Numeric,
    weights: Any = None,
    reduction: str = "mean",
) -> tuple[Array, Metrics]:
    """Computes SAC's automatic temperature (entropy-coefficient) loss.

      lᵢ = -log α · sg(log π(aᵢ|sᵢ) + H̄),   L(log α) = reduce_w(l),

    so ∂L/∂log α = mean[-log π] - H̄ = (entropy estimate) - H̄: descending it lowers α while
    the policy's entropy exceeds the target H̄ and raises it otherwise. Only `log_alpha` gets a
    gradient; parametrising by log α keeps α positive. The usual target is H̄ = -action_dim.

    Args:
      log_alpha: log α, shape `[]`, float.
      log_prob: log π(aᵢ|sᵢ) of actions sampled from the current policy, shape `[...]`,
        float; stop-gradiented.
      target_entropy: H̄, scalar (may be traced), e.g. -action_dim.
      weights: per-sample weights broadcastable to `[...]`, or None.
      reduction: "mean", "sum" or "none" (per-sample `[...]`).

    Returns:
      `(loss, metrics)` with `temperature_loss` (the weighted mean loss), `temperature_alpha`
      (exp(log α)) and `temperature_neg_log_prob` (the weighted mean of -log π).
    """
    fn = "temperature_loss"
    checks.check_reduction(fn, reduction)
    dtype = checks.float_dtype(fn, {"log_alpha": log_alpha, "log_prob": log_prob})
    if np.shape(log_alpha) != ():
        raise ValueError(f"{fn}: log_alpha has shape {np.shape(log_alpha)}; pass the scalar "
                         "log α, shape ()")
    checks.check_nonempty(fn, "log_prob", np.shape(log_prob))
    target_entropy = checks.hyperparameter(fn, "target_entropy", target_entropy, dtype,
                                           example="-action_dim")
    log_alpha = checks.as_float(log_alpha, dtype)
    log_prob = checks.as_float(log_prob, dtype)
    per_sample = log_alpha * _sg(log_prob + target_entropy)
    loss = -checks.reduce(fn, per_sample, weights, reduction)
    metrics = {
        "temperature_loss": (checks.metric(loss) if reduction == "mean"
                             else -checks.weighted_mean(per_sample, weights)),
        "temperature_alpha": checks.metric(jnp.exp(log_alpha)),
        "temperature_neg_log_prob": -checks.weighted_mean(log_prob, weights),
    }
    return loss, metrics
