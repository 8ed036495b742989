"""Actors: what produces one trajectory, on an actor device (gymnax) or on the host (gymnasium).

An actor holds its batch of environments between trajectories and produces the next
`Trajectory` from the parameters it is handed (`unroll(params, version, key)`):

* `GymnaxActor`: a jitted `lax.scan` of `num_steps` policy samples and vmapped `env.step`s on
  its device; the trajectory stays on that device until the learner takes it.
* `HostActor`: gymnasium's vector environment (`acjax.envs.gymnasium.HostVectorEnv`, in the
  actor's thread or in worker processes) and one jitted policy call per step; the trajectory
  is numpy.

Both keep termination and truncation apart and record the true successor of every step (the
final observation where an episode ended), as every acjax rollout does.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from acjax.agents.impala.config import ImpalaConfig, Trajectory
from acjax.agents.impala.learner import Learner
from acjax.agents.rollout import reset_envs
from acjax.envs import make_env
from acjax.envs.gymnasium import HostVectorEnv

__all__ = ["GymnaxActor", "HostActor", "gymnax_unroll", "make_actor"]


def gymnax_unroll(learner: Learner, env, env_params, params, env_state, obs, key, *,
                  num_steps: int):
    """`num_steps` steps of every environment: `(env_state, obs, fields)`.

    `fields` are the first nine of `Trajectory` (`[T, B, ...]`); the actions are drawn from
    `learner.act`, the transitions from gymnax's auto-resetting `step`.
    """
    num_envs = obs.shape[0]
    step_env = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def step(carry, step_key):
        env_state, obs = carry
        act_key, env_key = jax.random.split(step_key)
        action, log_prob = learner.act(params, obs, act_key)
        next_obs, env_state, reward, terminated, truncated, info = step_env(
            jax.random.split(env_key, num_envs), env_state, action, env_params)
        out = (obs.astype(jnp.float32), action, log_prob, reward.astype(jnp.float32),
               terminated, truncated, info["final_observation"].astype(jnp.float32),
               info["episode_return"].astype(jnp.float32),
               info["episode_length"].astype(jnp.int32))
        return (env_state, next_obs), out

    (env_state, obs), fields = jax.lax.scan(step, (env_state, obs),
                                            jax.random.split(key, num_steps))
    return env_state, obs, fields


class GymnaxActor:
    """An actor over `config.num_envs` gymnax environments on `device`.

    Args:
      config: the run's configuration.
      learner: the learner's functions (`act`).
      device: where the environments and the unroll live.
      actor: this actor's index (its environments' seeds differ from the other actors').
      key: the run's key (raw `uint32[2]`); the environments reset from `fold_in(key, actor)`.
      policy: a `Policy` on `device` to compile the unroll with before the first trajectory
        (so that no trajectory waits for a compile with parameters already stale).
    """

    def __init__(self, config: ImpalaConfig, learner: Learner, device, actor: int, key,
                 policy=None):
        self.config, self.device, self.actor = config, device, actor
        env, env_params = make_env(config.env)

        def unroll(params, env_state, obs, key):
            return gymnax_unroll(learner, env, env_params, params, env_state, obs, key,
                                 num_steps=config.num_steps)

        def reset(key):
            return reset_envs(env, env_params, key, config.num_envs)

        self._unroll = jax.jit(unroll, donate_argnums=(1, 2))
        reset_key = jax.random.fold_in(jax.random.wrap_key_data(jnp.asarray(key)), actor)
        reset_key = jax.device_put(jax.random.key_data(reset_key), device)
        self.obs, self.env_state = jax.jit(reset)(jax.random.wrap_key_data(reset_key))
        if policy is not None:
            self._unroll = self._unroll.lower(policy, self.env_state, self.obs,
                                              reset_key).compile()
        self._index = 0

    def unroll(self, params, version: int, key) -> Trajectory:
        """The next trajectory with `params` (a `Policy` on this actor's device) of `version`."""
        key = jax.device_put(key, self.device)
        self.env_state, self.obs, fields = self._unroll(params, self.env_state, self.obs, key)
        traj = Trajectory(*fields, version=np.int32(version), actor=np.int32(self.actor),
                          index=np.int32(self._index))
        self._index += 1
        return traj

    def close(self) -> None:
        pass


class HostActor:
    """An actor over `config.num_envs` gymnasium environments stepped on the host.

    The environments are gymnasium's `SyncVectorEnv` (stepped in the actor's thread) or, with
    `config.async_envs`, `AsyncVectorEnv` (one worker process per environment; a dead or hung
    worker raises `acjax.envs.gymnasium.EnvWorkerError` within `config.timeout` seconds).
    The policy runs jitted on `device`, one call per step for the whole batch.
    """

    def __init__(self, config: ImpalaConfig, learner: Learner, device, actor: int, key,
                 policy=None):
        self.config, self.device, self.actor = config, device, actor
        seed = int(np.asarray(key)[-1]) % (2**31 - 2**20) + actor * config.num_envs
        self.env = HostVectorEnv(config.env, config.num_envs, asynchronous=config.async_envs,
                                 seed=seed, timeout=config.timeout)
        self._act = jax.jit(learner.act)  # runs where the published parameters live
        self.obs = self.env.reset()
        if policy is not None:  # compiled before the first trajectory
            self._act = self._act.lower(policy, self.obs, jax.random.key(0)).compile()
        self._index = 0

    def unroll(self, params, version: int, key) -> Trajectory:
        """The next trajectory (numpy arrays) with `params` (a `Policy`) of `version`."""
        t, b = self.config.num_steps, self.config.num_envs
        keys = np.asarray(jax.random.key_data(
            jax.random.split(jax.random.wrap_key_data(jnp.asarray(key)), t)))
        obs, next_obs = [], []
        actions, log_probs, rewards, terms, truncs, ep_ret, ep_len = ([] for _ in range(7))
        for i in range(t):
            action, log_prob = self._act(params, self.obs, jax.random.wrap_key_data(keys[i]))
            action, log_prob = np.asarray(action), np.asarray(log_prob)
            step = self.env.step(action)
            obs.append(self.obs)
            actions.append(action)
            log_probs.append(log_prob)
            rewards.append(step.reward)
            terms.append(step.terminated)
            truncs.append(step.truncated)
            next_obs.append(step.final_obs)
            ep_ret.append(step.episode_return)
            ep_len.append(step.episode_length)
            self.obs = step.obs
        traj = Trajectory(
            obs=np.stack(obs), action=np.stack(actions), behaviour_log_prob=np.stack(log_probs),
            reward=np.stack(rewards).astype(np.float32), terminated=np.stack(terms),
            truncated=np.stack(truncs), next_obs=np.stack(next_obs),
            episode_return=np.stack(ep_ret).astype(np.float32),
            episode_length=np.stack(ep_len).astype(np.int32), version=np.int32(version),
            actor=np.int32(self.actor), index=np.int32(self._index))
        assert traj.obs.shape[:2] == (t, b)
        self._index += 1
        return traj

    def close(self) -> None:
        self.env.close()


def make_actor(config: ImpalaConfig, learner: Learner, device, actor: int, key,
               policy=None) -> Any:
    """The actor for `config.env`: `HostActor` for gymnasium ids, `GymnaxActor` otherwise
    (`policy`: compile with it before the first trajectory)."""
    cls = HostActor if config.on_host else GymnaxActor
    return cls(config, learner, device, actor, key, policy)
