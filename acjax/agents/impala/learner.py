"""The learner's pure functions: the V-trace actor-critic loss, its update, A3C's gradients.

The learner recomputes the current policy's log-probabilities and values on a batch of
trajectories the actors produced with older parameters, corrects the lag with V-trace
(`acjax.core.returns.vtrace`: importance weights rho_t = pi(a_t|s_t) / mu(a_t|s_t), truncated
at rho-bar for the targets and rho-bar_pg for the advantages, traces c_t = lambda min(1, rho_t)),
and descends

    L = -mean(rho_pg_t (q_t - V(s_t)) log pi(a_t|s_t)) + c_v mean((v_s_t - V(s_t))^2) / 2
        - c_H mean(H(pi(.|s_t)))

(`acjax.core.losses.a2c_loss` with V-trace's advantages and targets). A3C
(`correct_lag=False`) takes the same loss with log rho = 0: n-step returns bootstrapped from
the critic, no importance correction. See "IMPALA: Scalable Distributed Deep-RL with
Importance Weighted Actor-Learner Architectures", Espeholt et al. 2018
(https://arxiv.org/abs/1802.01561), and "Asynchronous Methods for Deep Reinforcement
Learning", Mnih et al. 2016 (https://arxiv.org/abs/1602.01783).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from acjax.agents.impala.config import ImpalaConfig, LearnerState, Policy, Trajectory
from acjax.agents.rollout import successor_values
from acjax.core import losses, returns
from acjax.envs import (
    EnvSpec,
    RunningMeanStd,
    normalize,
    running_mean_std_init,
    running_mean_std_update,
)
from acjax.networks import ActorCritic, make_actor_critic

__all__ = ["Learner", "episode_metrics", "impala_loss", "make_learner", "make_optimizer",
           "merge_trajectories"]


def impala_loss(
    config: ImpalaConfig, network: ActorCritic, params: Any, traj: Trajectory, *,
    obs_stats: RunningMeanStd | None = None, correct_lag: bool = True,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The V-trace actor-critic loss of a batch of trajectories `[T, B]`.

    Args:
      config: supplies gamma, vtrace_lambda, the clip thresholds, vf_coef, ent_coef and
        reward_scale.
      network: the actor-critic's pure functions.
      params: the learner's current parameters (the target policy pi and the critic).
      traj: the actors' trajectories, fields `[T, B, ...]`, with the behaviour policy's
        log-probabilities.
      obs_stats: the observation statistics the networks see observations through (required
        with `config.normalize_observations`, ignored without).
      correct_lag: apply V-trace's importance weights (IMPALA); False treats the data as
        on-policy (A3C: log rho = 0, targets are bootstrapped n-step returns).

    Returns:
      `(loss, metrics)`: `a2c_loss`'s metrics plus `rho_mean` (mean importance weight),
      `rho_clipped` (the fraction above rho-bar) and `vtrace_target_mean`.
    """
    obs, next_obs = traj.obs, traj.next_obs
    if config.normalize_observations:
        if obs_stats is None:
            raise ValueError("obs_stats=None: config.normalize_observations=True needs the "
                             "statistics the observations are normalised with")
        obs, next_obs = normalize(obs_stats, obs), normalize(obs_stats, next_obs)
    dist, values = network.policy_and_value(params, obs)  # [T, B]
    log_prob = dist.log_prob(traj.action)
    done = jnp.logical_or(traj.terminated, traj.truncated)
    next_values = successor_values(network, params, jax.lax.stop_gradient(values), next_obs,
                                   done)
    log_rhos = jax.lax.stop_gradient(log_prob - traj.behaviour_log_prob)
    if not correct_lag:
        log_rhos = jnp.zeros_like(log_rhos)
    vt = returns.vtrace(
        traj.reward * config.reward_scale, jax.lax.stop_gradient(values),
        jax.lax.stop_gradient(next_values), traj.terminated, traj.truncated, log_rhos,
        gamma=config.gamma, lambda_=config.vtrace_lambda,
        clip_rho_threshold=config.clip_rho_threshold,
        clip_pg_rho_threshold=config.clip_pg_rho_threshold,
    )
    loss, metrics = losses.a2c_loss(
        log_probs=log_prob, advantages=vt.pg_advantages, values=values, targets=vt.targets,
        entropies=dist.entropy(), value_coef=config.vf_coef, entropy_coef=config.ent_coef,
    )
    rhos = jnp.exp(log_rhos)
    metrics = {
        **metrics,
        "rho_mean": jnp.mean(rhos),
        "rho_clipped": jnp.mean((rhos > config.clip_rho_threshold).astype(jnp.float32)),
        "vtrace_target_mean": jnp.mean(vt.targets),
    }
    return loss, metrics


def make_optimizer(config: ImpalaConfig) -> optax.GradientTransformation:
    """Global-norm clipping, then RMSprop or Adam, with optional linear learning-rate decay
    over `config.num_updates` updates."""
    total = max(config.num_updates, 1)
    learning_rate: Any = config.learning_rate
    if config.anneal_lr:
        learning_rate = optax.linear_schedule(config.learning_rate, 0.0, total)
    if config.optimizer == "adam":
        base = optax.adam(learning_rate, eps=config.optimizer_eps)
    else:
        base = optax.rmsprop(learning_rate, decay=config.rmsprop_decay, eps=config.optimizer_eps)
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), base)


def episode_metrics(traj: Trajectory) -> dict[str, jax.Array]:
    """The episodes that ended in `traj`: `episode_return_sum`, `episode_length_sum`,
    `episode_count` (float32 scalars), as every trainer reports them."""
    done = jnp.logical_or(traj.terminated, traj.truncated).astype(jnp.float32)
    return {
        "episode_return_sum": jnp.sum(traj.episode_return * done),
        "episode_length_sum": jnp.sum(traj.episode_length.astype(jnp.float32) * done),
        "episode_count": jnp.sum(done),
    }


def merge_trajectories(trajs: tuple[Trajectory, ...]) -> Trajectory:
    """K trajectories `[T, B]` as one batch `[T, K B]` (version, actor, index: `[K]`)."""
    per_step = Trajectory._fields[:9]
    merged = {name: jnp.concatenate([getattr(t, name) for t in trajs], axis=1)
              for name in per_step}
    tags = {name: jnp.stack([jnp.asarray(getattr(t, name)) for t in trajs])
            for name in ("version", "actor", "index")}
    return Trajectory(**merged, **tags)


class Learner(NamedTuple):
    """The actor-learner's pure functions (each jittable; the runtime jits them per device).

    Attributes:
      network: the actor-critic.
      optimizer: the learner's optax transformation.
      init: `(key) -> LearnerState` (version 0).
      update: `(state, trajs: tuple[Trajectory, ...]) -> (state, metrics)`: one IMPALA update
        on the K trajectories merged along the batch axis (the observation statistics first
        take in their observations); `version` + 1.
      gradients: `(policy, traj) -> (grads, metrics)`: A3C's actor-side gradient of
        `impala_loss(correct_lag=False)` on one trajectory with the actor's `Policy` (metrics
        include `grad_norm` and the trajectory's episode statistics).
      apply_gradients: `(state, grads, obs=None) -> (state, metrics)`: the learner applies one
        actor's gradient (clipping, optimizer) and takes in its observations `obs[T, B, ...]`
        (with `normalize_observations`); `version` + 1.
      act: `(policy, obs[B, ...], key) -> (action[B, ...], log_prob[B])`, the behaviour policy
        on raw observations.
      greedy: `(policy, obs[B, ...]) -> action[B, ...]`, the greedy policy (evaluation).
    """

    network: ActorCritic
    optimizer: optax.GradientTransformation
    init: Callable[[jax.Array], LearnerState]
    update: Callable[..., tuple[LearnerState, dict[str, jax.Array]]]
    gradients: Callable[..., tuple[Any, dict[str, jax.Array]]]
    apply_gradients: Callable[..., tuple[LearnerState, dict[str, jax.Array]]]
    act: Callable[..., tuple[jax.Array, jax.Array]]
    greedy: Callable[..., jax.Array]


def _grad_norm(grads: Any) -> jax.Array:
    flat, _ = ravel_pytree(grads)
    return jnp.sqrt(jnp.sum(jnp.square(flat)))


def make_learner(config: ImpalaConfig, spec: EnvSpec) -> Learner:
    """The learner's functions for `config` on an environment described by `spec`."""
    network = make_actor_critic(spec, config.network)
    optimizer = make_optimizer(config)
    obs_example = jnp.zeros(spec.obs_shape, jnp.float32)

    def init(key: jax.Array) -> LearnerState:
        init_key, run_key = jax.random.split(key)
        params = network.init(init_key, obs_example)
        return LearnerState(params, optimizer.init(params), jnp.int32(0),
                            jax.random.key_data(run_key), running_mean_std_init(spec.obs_shape))

    def loss_fn(params, obs_stats, traj, correct_lag):
        return impala_loss(config, network, params, traj, obs_stats=obs_stats,
                           correct_lag=correct_lag)

    def take_in(obs_stats: RunningMeanStd, obs: jax.Array | None) -> RunningMeanStd:
        if not config.normalize_observations or obs is None:
            return obs_stats
        return running_mean_std_update(obs_stats, obs.reshape((-1,) + spec.obs_shape))

    def apply_gradients(state: LearnerState, grads: Any, obs: jax.Array | None = None):
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        state = state._replace(params=params, opt_state=opt_state, version=state.version + 1,
                               obs_stats=take_in(state.obs_stats, obs))
        return state, {"grad_norm": _grad_norm(grads)}

    def update(state: LearnerState, trajs: tuple[Trajectory, ...]):
        traj = merge_trajectories(tuple(trajs))
        state = state._replace(obs_stats=take_in(state.obs_stats, traj.obs))
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, state.obs_stats, traj, True)
        state, applied = apply_gradients(state, grads)
        return state, {**metrics, **applied, "loss": loss, **episode_metrics(traj)}

    def gradients(policy: Policy, traj: Trajectory):
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            policy.params, policy.obs_stats, traj, False)
        return grads, {**metrics, "loss": loss, "grad_norm": _grad_norm(grads),
                       **episode_metrics(traj)}

    def observe(policy: Policy, obs: jax.Array) -> jax.Array:
        if config.normalize_observations:
            return normalize(policy.obs_stats, obs)
        return obs.astype(jnp.float32)

    def act(policy: Policy, obs: jax.Array, key: jax.Array):
        dist = network.policy(policy.params, observe(policy, obs))
        return dist.sample_and_log_prob(key)

    def greedy(policy: Policy, obs: jax.Array):
        return network.policy(policy.params, observe(policy, obs)).mode()

    return Learner(network, optimizer, init, update, gradients, apply_gradients, act, greedy)
