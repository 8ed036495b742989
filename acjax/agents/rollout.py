"""Collecting experience: one `lax.scan` over a batch of gymnax environments and the policy.

The scan runs only what must be sequential (sample an action, step every environment); the
critic then evaluates all visited observations and all true successors in one batched call,
which is cheaper than evaluating it step by step inside the scan.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp

from acjax.core import collectives
from acjax.envs import (
    RewardScaleState,
    RunningMeanStd,
    normalize,
    reward_scale_update,
    running_mean_std_update,
)
from acjax.networks import ActorCritic, Params


class Transition(NamedTuple):
    """A batch of environment steps, time-major: every field is `[T, B, ...]`.

    Attributes:
      obs: `[T, B, *obs_shape]` float32, the observation the policy acted on (normalised when
        observation normalisation is on).
      action: `[T, B]` int32 (discrete) or `[T, B, action_dim]` float32 (unclipped sample).
      log_prob: `[T, B]` log-probability of `action` under the behaviour policy.
      value: `[T, B]` critic's `V(s_t)`.
      reward: `[T, B]` reward of the step (scaled when reward scaling is on).
      terminated: `[T, B]` bool, the episode reached a terminal state at this step.
      truncated: `[T, B]` bool, the episode was cut (time limit) at this step.
      next_value: `[T, B]` `V(s'_t)` of the true successor: the final observation's value where
        the episode ended at t, otherwise the value of `s_{t+1}`.
      episode_return: `[T, B]` undiscounted raw return of the episode ending at t (valid where
        `terminated | truncated`).
      episode_length: `[T, B]` int32 length of that episode (valid where it ended).
      next_obs: `[T, B, *obs_shape]` the true successors `s'_t` as the networks take them (the
        final observation where the episode ended at t), or None unless the rollout was asked
        to keep them (`keep_next_obs=True`).
    """

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    next_value: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array
    next_obs: jax.Array | None = None


class EnvCarry(NamedTuple):
    """What the environments carry from one rollout to the next.

    Attributes:
      env_state: batched gymnax state, leaves `[B, ...]`.
      obs: `[B, *obs_shape]` raw (unnormalised) current observations.
      obs_stats: running observation statistics (unchanged when normalisation is off).
      reward_scale: running return statistics (unchanged when reward scaling is off).
    """

    env_state: Any
    obs: jax.Array
    obs_stats: RunningMeanStd
    reward_scale: RewardScaleState


def reset_envs(env, env_params, key: chex.PRNGKey, num_envs: int, axis_name: str | None = None):
    """Resets environments: returns `(obs[B, ...], env_state)`.

    `num_envs` is the global count; with `axis_name` this shard resets its `B = num_envs /
    shards` of them, each with the key it would get in an unsplit batch.
    """
    keys = collectives.shard_keys(key, num_envs, axis_name)
    return jax.vmap(env.reset, in_axes=(0, None))(keys, env_params)


def rollout(
    network: ActorCritic,
    params: Params,
    env,
    env_params,
    carry: EnvCarry,
    key: chex.PRNGKey,
    *,
    num_steps: int,
    gamma: chex.Numeric = 0.99,
    normalize_observations: bool = False,
    scale_rewards: bool = False,
    unroll: int = 1,
    axis_name: str | None = None,
    keep_next_obs: bool = False,
) -> tuple[EnvCarry, Transition]:
    """Runs the policy for `num_steps` steps in every environment of the batch.

    Args:
      network: the actor-critic's pure functions.
      params: its parameters.
      env, env_params: a wrapped gymnax environment (see `acjax.envs.make_env`).
      carry: environment state and running statistics from the previous rollout.
      key: PRNG key for actions and environment transitions.
      num_steps: T, the rollout length (static).
      gamma: discount used by reward scaling's running return.
      normalize_observations: update and apply the observation statistics.
      scale_rewards: divide rewards by the running std of the discounted return.
      unroll: `lax.scan` unroll factor.
      axis_name: mapped axis the batch of environments is split along (data parallelism):
        per-environment keys then follow the global index and the running statistics are
        shared by all shards.
      keep_next_obs: also return the true successor observations (`Transition.next_obs`).

    Returns:
      `(carry, transition)` with the transition's fields `[num_steps, B, ...]`.
    """
    num_envs = carry.obs.shape[0] * collectives.shard_count(axis_name)
    step_vmap = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def maybe_normalize(stats, obs):
        return normalize(stats, obs) if normalize_observations else obs.astype(jnp.float32)

    def step(c: EnvCarry, draws):
        action_noise, env_keys = draws
        obs_in = maybe_normalize(c.obs_stats, c.obs)
        dist = network.policy(params, obs_in)
        action, log_prob = dist.sample_and_log_prob_from_noise(action_noise)
        next_obs, env_state, reward, terminated, truncated, info = step_vmap(
            env_keys, c.env_state, action, env_params
        )
        done = jnp.logical_or(terminated, truncated)
        final_obs = info["final_observation"]
        obs_stats = c.obs_stats
        if normalize_observations:
            obs_stats = running_mean_std_update(obs_stats, next_obs, axis_name)
        reward_scale = c.reward_scale
        reward = reward.astype(jnp.float32)
        if scale_rewards:
            reward_scale, reward = reward_scale_update(
                reward_scale, reward, done, gamma, axis_name=axis_name
            )
        true_next = maybe_normalize(obs_stats, final_obs)
        out = (
            obs_in,
            action,
            log_prob,
            reward,
            terminated,
            truncated,
            true_next,
            info["episode_return"],
            info["episode_length"],
        )
        return EnvCarry(env_state, next_obs, obs_stats, reward_scale), out

    # Every step's per-environment keys and the policy's sampling noise, drawn before the scan
    # in a few vectorised calls: the same numbers as drawing them inside each step (each
    # environment's noise from its own key), without a hash call per step for them.
    step_keys = jax.vmap(jax.random.split)(jax.random.split(key, num_steps))  # [T, 2, 2]
    per_env = jax.vmap(lambda k: collectives.shard_keys(k, num_envs, axis_name))
    action_keys, env_keys = per_env(step_keys[:, 0]), per_env(step_keys[:, 1])  # [T, B, 2]
    one_env_dist = jax.tree.map(  # the policy's distribution for one environment, as shapes
        lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype),
        jax.eval_shape(network.policy, params, jax.ShapeDtypeStruct(carry.obs.shape, jnp.float32)),
    )
    action_noise = jax.vmap(jax.vmap(one_env_dist.noise))(action_keys)  # [T, B, ...]
    carry, out = jax.lax.scan(step, carry, (action_noise, env_keys), unroll=unroll)
    obs, action, log_prob, reward, terminated, truncated, true_next, ep_ret, ep_len = out
    value = network.value(params, obs)
    next_value = successor_values(
        network, params, value, true_next, jnp.logical_or(terminated, truncated)
    )
    transition = Transition(
        obs=obs,
        action=action,
        log_prob=log_prob,
        value=value,
        reward=reward,
        terminated=terminated,
        truncated=truncated,
        next_value=next_value,
        episode_return=ep_ret,
        episode_length=ep_len,
        next_obs=true_next if keep_next_obs else None,
    )
    return carry, transition


def successor_values(
    network: ActorCritic, params: Params, value: jax.Array, true_next: jax.Array, done: jax.Array
) -> jax.Array:
    """`V(s'_t)` for every step of a rollout, `[T, B]`, given `value = V(s_t)` `[T, B]`.

    The true successor `s'_t` is `s_{t+1}` wherever the episode went on, so there
    `V(s'_t) = value[t + 1]`; only the last step and the steps where an episode ended
    (`true_next` then holds its final observation) need the critic again. When those ends fit
    in `B` rows (episodes longer than about `T` steps on average), the critic runs on `2 B`
    rows instead of all `T B` of `true_next`; otherwise on all of them. Only this extra pass
    sits in the `lax.cond`, so under `vmap` (where the condition selects between both
    branches) it costs at most `2 B` rows more than the plain pass.

    Args:
      network, params: the actor-critic.
      value: `V(s_t)`, `[T, B]`.
      true_next: the true successors `s'_t`, `[T, B, *obs_shape]` (as the critic takes them).
      done: whether the episode ended at step t (terminated or truncated), `[T, B]`.
    """
    t, b = done.shape
    if t == 1:
        return network.value(params, true_next)
    ended = done[:-1].reshape(-1)  # steps 0 ... T-2, flat index t * B + env
    flat_next = true_next[:-1].reshape((-1,) + true_next.shape[2:])

    def few_ends(_):
        # Index T * B (out of range) fills the unused slots; their values are dropped.
        idx = jnp.nonzero(ended, size=b, fill_value=t * b)[0]
        ends = jnp.take(flat_next, idx, axis=0, mode="clip")
        v = network.value(params, jnp.concatenate([true_next[-1], ends], axis=0))
        out = jnp.concatenate([value[1:].reshape(-1), v[:b]])
        return out.at[idx].set(v[b:], mode="drop").reshape(t, b)

    def many_ends(_):
        return network.value(params, true_next)

    return jax.lax.cond(jnp.sum(ended) <= b, few_ends, many_ends, None)
