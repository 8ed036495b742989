"""Off-policy actor-critic losses as pure functions: the building blocks of DDPG, TD3 and SAC.

Batches are flat `[N]` arrays of transitions (s_tm1, a_tm1, r_t, terminated_t, s_t); K critics
(twin critics: K = 2) are stacked on a leading axis, `[K, N]`. Each loss returns
`(loss, metrics)` as the on-policy ones in `acjax.core.losses` do; `polyak_update` and the
targets return arrays.
"""

import chex
import jax
import jax.numpy as jnp

from acjax.core.losses import Array, Metrics, Numeric, _scalar

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




def _concrete_float(x: Numeric) -> float | None:
    """`float(x)` for a Python or NumPy scalar (or concrete array), None when traced."""
    try:
        return float(x)
    except (TypeError, jax.errors.ConcretizationTypeError):
        return None


def _check_range(name: str, value: Numeric, low: float, high: float, fix: str) -> None:
    """Raises a ValueError for a concrete `value` outside `[low, high]`; traced values pass."""
    v = _concrete_float(value)
    if v is not None and not (low <= v <= high):
        raise ValueError(f"{name} must lie in [{low}, {high}]; got {v}. {fix}")


def _min_over_critics(q: Array, name: str) -> Array:
    """min_k q[k] for `[K, N]` critics; `[N]` (a single critic) is returned as is."""
    chex.assert_rank(q, {1, 2})
    if q.ndim == 2 and q.shape[0] < 1:
        raise ValueError(f"{name} has shape {q.shape}: no critics on the leading axis.")
    return jnp.min(q, axis=0) if q.ndim == 2 else q


def polyak_update(online_params, target_params, tau: Numeric):
    """Moves target parameters towards online ones (Polyak averaging).

      θ' ← τ θ + (1 - τ) θ',

    leaf by leaf over matching pytrees. τ = 1 copies the online parameters,
    τ = 0 leaves the target unchanged; DDPG/TD3/SAC use τ ≈ 0.005 per update.
    Not a loss: returns only the new target parameters.

    Args:
      online_params: pytree θ of float arrays.
      target_params: pytree θ' with the structure and shapes of `online_params`.
      tau: scalar τ in [0, 1] (may be traced).

    Returns:
      The new target parameters, with the structure and dtypes of `target_params`.

    Raises:
      ValueError: if a concrete `tau` lies outside [0, 1] or a leaf is not float.
    """
    _check_range("polyak_update: tau", tau, 0.0, 1.0,
                 "Pass the target-network step size, e.g. tau=0.005 (1 copies the online "
                 "parameters).")

    def update(path, online, target):
        if not (jnp.issubdtype(jnp.result_type(online), jnp.floating)
                and jnp.issubdtype(jnp.result_type(target), jnp.floating)):
            raise ValueError(
                f"polyak_update: leaf {jax.tree_util.keystr(path)} has dtype "
                f"{jnp.result_type(target)}; Polyak averaging needs float parameters. "
                "Pass only the networks' float parameters (not counters or integer state)."
            )
        chex.assert_equal_shape([online, target])
        t = jnp.asarray(tau, target.dtype)
        chex.assert_rank(t, 0)
        return (t * online + (1.0 - t) * target).astype(target.dtype)

    return jax.tree_util.tree_map_with_path(update, online_params, target_params)


def bellman_target(
    r_t: Array, terminated_t: Array, discount: Numeric, q_t: Array
) -> Array:
    """Computes the one-step bootstrapped target for Q(s_tm1, a_tm1).

      yᵢ = r_tᵢ + γ (1 - terminated_tᵢ) q_tᵢ.

    Only TERMINATION stops bootstrapping, never `done`: a transition cut off by
    a time limit (truncated, not terminated) still bootstraps, from the value
    q_t of the TRUE next observation (gymnax's `info["final_observation"]`, not
    the observation the environment reset to).

    Args:
      r_t: rewards, shape `[N]`, float.
      terminated_t: 1 (or True) where s_t is terminal, shape `[N]`, float or bool.
      discount: γ, a scalar (may be traced) or per-transition `[N]` float.
      q_t: the already reduced value of the next state (e.g. Q_target(s_t,
        μ'(s_t))), shape `[N]`, float.

    Returns:
      Targets y, shape `[N]`, dtype of `r_t`. They are not stop-gradiented;
      `critic_loss` does that.
    """
    chex.assert_rank([r_t, terminated_t, q_t], 1)
    chex.assert_type([r_t, q_t], float)
    chex.assert_equal_shape([r_t, terminated_t, q_t])
    discount = jnp.asarray(discount, r_t.dtype)
    chex.assert_rank(discount, {0, 1})
    if discount.ndim == 1:
        chex.assert_equal_shape([discount, r_t])
    not_terminated = 1.0 - terminated_t.astype(r_t.dtype)
    return r_t + discount * not_terminated * q_t.astype(r_t.dtype)


def td3_target(
    r_t: Array, terminated_t: Array, discount: Numeric, q_t: Array
) -> Array:
    """Computes TD3's clipped double-Q target.

      yᵢ = r_tᵢ + γ (1 - terminated_tᵢ) min_k q_t[k, i].

    See "Addressing Function Approximation Error in Actor-Critic Methods",
    Fujimoto et al. (https://arxiv.org/abs/1802.09477). Truncated transitions
    bootstrap, as in `bellman_target`.

    Args:
      r_t: rewards, shape `[N]`, float.
      terminated_t: 1 (or True) where s_t is terminal, shape `[N]`, float or bool.
      discount: γ, a scalar (may be traced) or `[N]` float.
      q_t: the K target critics' values Q'_k(s_t, ã_t) at the (smoothed) target
        action, shape `[K, N]` (or `[N]` for a single critic), float.

    Returns:
      Targets y, shape `[N]`, dtype of `r_t`.
    """
    chex.assert_type(q_t, float)
    return bellman_target(r_t, terminated_t, discount, _min_over_critics(q_t, "q_t"))


def sac_target(
    r_t: Array,
    terminated_t: Array,
    discount: Numeric,
    q_t: Array,
    log_prob_t: Array,
    alpha: Numeric,
) -> Array:
    """Computes SAC's soft clipped double-Q target.

      yᵢ = r_tᵢ + γ (1 - terminated_tᵢ) (min_k q_t[k, i] - α log π(a_tᵢ|s_tᵢ)),

    with a_t ~ π(·|s_t) freshly sampled at the next state. See "Soft
    Actor-Critic Algorithms and Applications", Haarnoja et al.
    (https://arxiv.org/abs/1812.05905). Truncated transitions bootstrap, as in
    `bellman_target`.

    Args:
      r_t: rewards, shape `[N]`, float.
      terminated_t: 1 (or True) where s_t is terminal, shape `[N]`, float or bool.
      discount: γ, a scalar (may be traced) or `[N]` float.
      q_t: the target critics' values Q'_k(s_t, a_t), shape `[K, N]` (or `[N]`).
      log_prob_t: log π(a_t|s_t) of the sampled next actions, shape `[N]`.
      alpha: the temperature α > 0, a scalar (may be traced).

    Returns:
      Targets y, shape `[N]`, dtype of `r_t`.
    """
    chex.assert_rank(log_prob_t, 1)
    chex.assert_type([q_t, log_prob_t], float)
    q_min = _min_over_critics(q_t, "q_t")
    chex.assert_equal_shape([q_min, log_prob_t])
    alpha = _scalar(alpha, r_t.dtype)
    soft_q = q_min.astype(r_t.dtype) - alpha * log_prob_t.astype(r_t.dtype)
    return bellman_target(r_t, terminated_t, discount, soft_q)


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
      action_t: target-policy actions μ'(s_t), shape `[N, D]`, float.
      key: a PRNG key.
      noise_std: σ >= 0, scalar (may be traced); TD3 uses 0.2 (for actions in [-1, 1]).
      noise_clip: c >= 0, scalar (may be traced); TD3 uses 0.5.
      low: lower action bound, a scalar or `[D]` (default -1).
      high: upper action bound, a scalar or `[D]` (default 1).

    Returns:
      Smoothed actions ã, shape `[N, D]`, dtype of `action_t`.

    Raises:
      ValueError: for a concrete negative `noise_std` or `noise_clip`.
    """
    chex.assert_rank(action_t, 2)
    chex.assert_type(action_t, float)
    for name, value, example in (("noise_std", noise_std, "0.2"),
                                 ("noise_clip", noise_clip, "0.5")):
        v = _concrete_float(value)
        if v is not None and v < 0:
            raise ValueError(
                f"target_policy_smoothing: {name} must be >= 0; got {v}. Pass a "
                f"non-negative value, e.g. {name}={example}."
            )
    dtype = action_t.dtype
    std = _scalar(noise_std, dtype)
    clip = _scalar(noise_clip, dtype)
    low = jnp.asarray(low, dtype)
    high = jnp.asarray(high, dtype)
    chex.assert_rank([low, high], {0, 1})
    low = jnp.broadcast_to(low, action_t.shape)
    high = jnp.broadcast_to(high, action_t.shape)
    noise = jnp.clip(std * jax.random.normal(key, action_t.shape, dtype), -clip, clip)
    return jnp.clip(action_t + noise, low, high)


def critic_loss(q_tm1: Array, target: Array) -> tuple[Array, Metrics]:
    """Computes the squared TD-error loss of one or K critics.

      L(φ) = Σ_k ½ mean_i[ (Q_φk(s_tm1ᵢ, a_tm1ᵢ) - sg(yᵢ))² ].

    Every critic regresses on the same target y (stop-gradient: no gradient
    reaches the target networks or the next-state policy). The K critics' losses
    are SUMMED, not averaged, so that each critic's gradient is that of its own
    ½ mean squared error whatever K is.

    Args:
      q_tm1: Q_φk(s_tm1, a_tm1), shape `[N]` (one critic) or `[K, N]`, float.
      target: targets y (e.g. from `td3_target` or `sac_target`), shape `[N]`.

    Returns:
      `(loss, metrics)`: the scalar loss and the scalars
        * `critic_loss`: the loss;
        * `q_mean`: mean of q_tm1 over critics and batch;
        * `target_mean`: mean of y;
        * `td_error_abs`: mean |q_tm1 - y| over critics and batch.
    """
    chex.assert_rank(q_tm1, {1, 2})
    chex.assert_rank(target, 1)
    chex.assert_type([q_tm1, target], float)
    chex.assert_equal_shape_suffix([q_tm1, target], 1)
    target = jax.lax.stop_gradient(target.astype(q_tm1.dtype))
    q = q_tm1 if q_tm1.ndim == 2 else q_tm1[None]
    td_error = q - target[None, :]
    loss = jnp.sum(0.5 * jnp.mean(jnp.square(td_error), axis=-1))
    td_error = jax.lax.stop_gradient(td_error)
    metrics = {
        "critic_loss": loss,
        "q_mean": jnp.mean(jax.lax.stop_gradient(q)),
        "target_mean": jnp.mean(target),
        "td_error_abs": jnp.mean(jnp.abs(td_error)),
    }
    return loss, metrics


def dpg_actor_loss(
    action: Array, dq_da: Array, *, dq_da_clipping: Numeric | None = None
) -> tuple[Array, Metrics]:
    """Computes the deterministic policy gradient loss (DDPG, TD3).

      L(θ) = mean_i ½ Σ_d (sg(aᵢ + ∂Q/∂aᵢ) - aᵢ)²_d,   aᵢ = μ_θ(sᵢ),

    whose value is ½ mean_i |∂Q/∂aᵢ|² and whose gradient with respect to the
    actions is ∂L/∂aᵢ = -(∂Q/∂aᵢ) / N: descending it ascends Q along
    ∇_θ μ_θ(s) ∂Q/∂a, exactly as -mean Q(s, μ_θ(s)) would, but the critic gets
    no gradient by construction (the whole target is stop-gradiented). This is
    rlax's `dpg_loss` (elementwise ½ (sg(a + ∂Q/∂a) - a)², shape `[D]` per
    example) summed over the action components and averaged over the batch.

    The caller computes `dq_da` as the gradient of the critic with respect to
    its action input, e.g. `jax.vmap(jax.grad(q_fn, argnums=1))(obs, action)`
    (with the first critic for TD3). See "Deterministic Policy Gradient
    Algorithms", Silver et al. (2014), and "Continuous control with deep
    reinforcement learning", Lillicrap et al. (https://arxiv.org/abs/1509.02971).

    Args:
      action: μ_θ(sᵢ), shape `[N, D]`, float; the only input that gets a gradient.
      dq_da: ∂Q(sᵢ, a)/∂a at a = μ_θ(sᵢ), shape `[N, D]`, float; stop-gradiented.
      dq_da_clipping: if given, each row of `dq_da` is rescaled to an L2 norm of
        at most this value (as rlax's `dqda_clipping`); scalar, may be traced.

    Returns:
      `(loss, metrics)`: the scalar loss and the scalars
        * `actor_loss`: the loss (NOT -mean Q; reporting Q is the caller's job);
        * `dq_da_norm`: mean over the batch of |∂Q/∂a|₂ (before clipping).
    """
    chex.assert_rank([action, dq_da], 2)
    chex.assert_type([action, dq_da], float)
    chex.assert_equal_shape([action, dq_da])
    v = None if dq_da_clipping is None else _concrete_float(dq_da_clipping)
    if v is not None and v <= 0:
        raise ValueError(
            f"dpg_actor_loss: dq_da_clipping must be > 0 (or None for no clipping); got {v}. "
            "Pass the largest L2 norm of dQ/da to keep, e.g. dq_da_clipping=10.0."
        )
    dq_da = jax.lax.stop_gradient(dq_da.astype(action.dtype))
    norm = jnp.sqrt(jnp.sum(jnp.square(dq_da), axis=-1))
    if dq_da_clipping is not None:
        max_norm = _scalar(dq_da_clipping, action.dtype)
        scale = jnp.minimum(1.0, max_norm / jnp.maximum(norm, jnp.finfo(action.dtype).tiny))
        dq_da = dq_da * scale[:, None]
    target = jax.lax.stop_gradient(action + dq_da)
    loss = jnp.mean(0.5 * jnp.sum(jnp.square(target - action), axis=-1))
    return loss, {"actor_loss": loss, "dq_da_norm": jnp.mean(norm)}


def sac_actor_loss(
    log_prob: Array, q_values: Array, alpha: Numeric
) -> tuple[Array, Metrics]:
    """Computes SAC's policy loss.

      L(θ) = mean_i[ sg(α) log π_θ(aᵢ|sᵢ) - min_k Q_k(sᵢ, aᵢ) ],   aᵢ ~ π_θ(·|sᵢ)
      reparametrised (e.g. `TanhGaussian.sample_and_log_prob`).

    Gradients flow into log π and, through the reparametrised actions, into the
    Q values; the caller stops gradients into the CRITIC'S PARAMETERS (e.g.
    evaluates Q with `stop_gradient(critic_params)`) so that only the actor
    learns from this loss. α gets no gradient (see `temperature_loss`).

    Args:
      log_prob: log π_θ(aᵢ|sᵢ) of the sampled actions, shape `[N]`, float.
      q_values: Q_k(sᵢ, aᵢ), shape `[K, N]` (or `[N]` for one critic), float.
      alpha: the temperature α > 0, a scalar (may be traced, e.g. exp(log_alpha)).

    Returns:
      `(loss, metrics)`: the scalar loss and the scalars
        * `actor_loss`: the loss;
        * `entropy`: -mean log π (a one-sample entropy estimate);
        * `alpha`: α;
        * `q_policy_mean`: mean of min_k Q_k at the policy's actions.
    """
    chex.assert_rank(log_prob, 1)
    chex.assert_type([log_prob, q_values], float)
    q_min = _min_over_critics(q_values, "q_values")
    chex.assert_equal_shape([q_min, log_prob])
    alpha = jax.lax.stop_gradient(_scalar(alpha, log_prob.dtype))
    loss = jnp.mean(alpha * log_prob - q_min.astype(log_prob.dtype))
    metrics = {
        "actor_loss": loss,
        "entropy": -jnp.mean(jax.lax.stop_gradient(log_prob)),
        "alpha": alpha,
        "q_policy_mean": jnp.mean(jax.lax.stop_gradient(q_min)),
    }
    return loss, metrics


def temperature_loss(
    log_alpha: Array, log_prob: Array, target_entropy: Numeric
) -> tuple[Array, Metrics]:
    """Computes SAC's automatic temperature (entropy-coefficient) loss.

      L(log α) = -mean_i[ log α · sg(log π(aᵢ|sᵢ) + H̄) ],

    so ∂L/∂log α = mean[-log π] - H̄ = (entropy estimate) - H̄: descending it
    lowers α while the policy's entropy exceeds the target H̄ and raises it
    otherwise. Only `log_alpha` gets a gradient. Parametrising by log α keeps α
    positive. The target entropy is the caller's choice; the usual heuristic is
    H̄ = -action_dim.

    Args:
      log_alpha: log α, shape `[]`, float.
      log_prob: log π(aᵢ|sᵢ) of actions sampled from the current policy, shape
        `[N]`, float; stop-gradiented.
      target_entropy: H̄, a scalar (may be traced), e.g. -action_dim.

    Returns:
      `(loss, metrics)`: the scalar loss and the scalars `alpha_loss` (the loss)
      and `alpha` (exp(log α)).
    """
    chex.assert_rank(log_alpha, 0)
    chex.assert_rank(log_prob, 1)
    chex.assert_type([log_alpha, log_prob], float)
    target_entropy = _scalar(target_entropy, log_prob.dtype)
    weight = jax.lax.stop_gradient(log_prob + target_entropy)
    loss = -jnp.mean(log_alpha * weight)
    return loss, {"alpha_loss": loss, "alpha": jnp.exp(jax.lax.stop_gradient(log_alpha))}
