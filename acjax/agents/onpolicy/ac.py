"""The one-step ("basic") actor-critic, with a state-value or an action-value critic.

Sutton and Barto, "Reinforcement Learning: An Introduction" (2nd ed., 13.5): after every
environment step of the batch (`num_steps=1`), one gradient step on the actor and the critic.

* `critic="v"`: the TD residual is the advantage and the critic regresses on the TD target,

    δₜ = rₜ + γ (1 - terminatedₜ) V(s'ₜ) - V(sₜ),     L = -δₜ log π(aₜ|sₜ) + c_v ½ δₜ²,

  which is A2C with `num_steps=1`, `advantage="nstep"`, `n_step=1` (the defaults here are
  exactly that, and the updates agree).
* `critic="q"`: a critic Q(s, a) on the state and the action (`acjax.networks.action_value`)
  with a SARSA target, `a'` drawn from the current policy at the true successor `s'`,

    yₜ = rₜ + γ (1 - terminatedₜ) Q(s'ₜ, a'),      a' ~ π(·|s'ₜ),

  and the actor's advantage against the policy's value under Q,

    Aₜ = Q(sₜ, aₜ) - Σ_b π(b|sₜ) Q(sₜ, b)                  (discrete),
    Aₜ = Q(sₜ, aₜ) - 1/K Σ_k Q(sₜ, a_k),  a_k ~ π(·|sₜ)    (continuous, K = `Q_SAMPLES`).

  A truncated step bootstraps from Q at its final observation; a terminated one does not.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from acjax.agents.onpolicy import a2c
from acjax.agents.onpolicy.config import PPOA2CConfig
from acjax.agents.onpolicy.loop import OnPolicyAgent, UpdateInputs
from acjax.agents.rollout import Transition
from acjax.core import collectives, returns
from acjax.core.distributions import Categorical
from acjax.networks import make_actor_critic
from acjax.networks.action_value import make_actor_q_critic

__all__ = ["AGENT", "Q_SAMPLES", "q_advantages"]

Q_SAMPLES = 8
"""Actions sampled per state for the continuous Q critic's value estimate."""


def _sample(dist, keys):
    """One action per environment from `dist` (batch `[T, B]`) with `keys[B]`."""
    return jax.vmap(lambda d, k: d.sample(k), in_axes=(1, 0), out_axes=1)(dist, keys)


def q_advantages(config: PPOA2CConfig, hparams, traj: Transition, inputs: UpdateInputs):
    """`(advantages[T, B], targets[T, B], agent_state)` of the Q critic (module docstring)."""
    net, params = inputs.network, inputs.params
    next_key, value_key = jax.random.split(inputs.key)
    keys = collectives.shard_keys(next_key, config.num_envs, inputs.axis_name)
    next_action = _sample(net.policy(params, traj.next_obs), keys)
    q_next = net.q_value(params, traj.next_obs, next_action)
    targets = returns.n_step_returns(traj.reward, q_next, traj.terminated, traj.truncated,
                                     gamma=hparams.gamma, n=1)
    dist = net.policy(params, traj.obs)
    q_taken = net.q_value(params, traj.obs, traj.action)
    if isinstance(dist, Categorical):
        baseline = jnp.sum(dist.probs() * net.action_values(params, traj.obs), axis=-1)
    else:
        keys = collectives.shard_keys(value_key, config.num_envs, inputs.axis_name)
        per_sample = jax.vmap(lambda k: jax.random.split(k, Q_SAMPLES))(keys)  # [B, K, 2]
        draws = jax.vmap(lambda ks: _sample(dist, ks), in_axes=1)(per_sample)  # [K, T, B, ...]
        baseline = jnp.mean(jax.vmap(lambda a: net.q_value(params, traj.obs, a))(draws), axis=0)
    advantages = jax.lax.stop_gradient(q_taken - baseline)
    return advantages, targets, inputs.agent_state


def _critic(config, network, params, batch):
    if config.critic == "q":
        return network.policy(params, batch.obs), network.q_value(params, batch.obs,
                                                                   batch.action)
    return network.policy_and_value(params, batch.obs)


def _make_network(spec, config: PPOA2CConfig, dense):
    if config.critic == "q":
        return make_actor_q_critic(spec, config.network, dense=dense)
    return make_actor_critic(spec, config.network, dense=dense)


def _advantages(config: PPOA2CConfig, hparams, traj: Transition, inputs: UpdateInputs):
    if config.critic == "q":
        return q_advantages(config, hparams, traj, inputs)
    targets = returns.n_step_returns(traj.reward, traj.next_value, traj.terminated,
                                     traj.truncated, gamma=hparams.gamma, n=1)
    return targets - traj.value, targets, inputs.agent_state


def _validate(config: PPOA2CConfig) -> None:
    wrong = {name: getattr(config, name) for name, want in (
        ("num_steps", 1), ("update_epochs", 1), ("num_minibatches", 1), ("advantage", "nstep"),
        ("n_step", 1), ("whole_episodes", False), ("clip_value", False))
        if getattr(config, name) != want}
    if wrong:
        fix = {"num_steps": "--num-steps 1", "update_epochs": "--update-epochs 1",
               "num_minibatches": "--num-minibatches 1", "advantage": "--advantage nstep",
               "n_step": "--n-step 1", "whole_episodes": "drop --whole-episodes",
               "clip_value": "drop --clip-value"}
        raise ValueError(
            "algo='ac' is the one-step actor-critic (one TD step, one update per env step), but "
            + ", ".join(f"{k}={v!r}" for k, v in wrong.items()) + "; "
            + ", ".join(fix[k] for k in wrong) + " (or use --algo a2c)"
        )


# A2C's loss: the policy gradient on the (TD or Q) advantage, the critic's regression on its
# target and the entropy bonus.
AGENT = OnPolicyAgent("ac", a2c.AGENT.loss, _validate, advantages=_advantages,
                      make_network=_make_network, critic=_critic, needs_next_obs=True)
