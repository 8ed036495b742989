"""The configuration of an on-policy run, its traced hyperparameters and its state.

`PPOA2CConfig` is shared by every on-policy agent (`acjax.agents.onpolicy.ppo`, `.a2c`, ...):
its fields describe the rollout, the advantage estimator, the optimizer and the losses'
coefficients; `algo` names the agent. Fields built with `traced(...)` are the
hyperparameters a sweep may `vmap` over (`Hyperparams`); the others fix shapes.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from acjax.agents.rollout import EnvCarry
from acjax.core.config import (
    check_nonnegative,
    check_positive,
    check_unit_interval,
    flag,
    traced,
    traced_fields,
)
from acjax.envs import EnvSpec, check_env_name, env_spec, make_env
from acjax.networks import NetworkConfig

__all__ = ["Batch", "Hyperparams", "PPOA2CConfig", "TrainState"]


@dataclasses.dataclass(frozen=True)
class PPOA2CConfig:
    """Everything that defines an on-policy run.

    Fields built with `traced(...)` are hyperparameters that enter the computation as values
    (you may batch them with `vmap` for sweeps); the others are static: they fix shapes or
    program structure, and changing them means a new compile.
    """

    env: str = "CartPole-v1"
    """Any gymnax environment id, e.g. CartPole-v1, Pendulum-v1, Breakout-MinAtar."""
    algo: str = "ppo"
    """ppo: clipped surrogate, epochs of minibatch SGD; a2c: one step per rollout; reinforce:
    Monte-Carlo policy gradient over whole episodes; ac: one-step actor-critic (any on-policy
    agent of acjax.run.registry)."""
    seed: int = 0
    """Seed of the run's PRNG key."""
    total_timesteps: int = 500_000
    """Environment steps to train for (rounded down to whole updates)."""
    num_envs: int = 4
    """Environments stepped in parallel (vmapped)."""
    num_steps: int = 128
    """Rollout length per environment and update."""
    update_epochs: int = 4
    """Passes over each rollout (PPO); must be 1 for A2C."""
    num_minibatches: int = 4
    """Minibatches per epoch; must divide num_steps (each minibatch takes num_steps /
    num_minibatches random steps of every environment); 1 for A2C."""
    learning_rate: float = traced(2.5e-4)
    """Optimizer step size (traced: sweepable)."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over training."""
    gamma: float = traced(0.99)
    """Discount factor in [0, 1]."""
    gae_lambda: float = traced(0.95)
    """GAE lambda in [0, 1] (1: Monte-Carlo with bootstrap, 0: one-step TD)."""
    advantage: Literal["gae", "nstep", "mc"] = "gae"
    """Advantage estimator: GAE(lambda), bootstrapped n-step returns, or Monte-Carlo returns
    (mc: the whole rest of the episode; bootstraps only where an episode was truncated or the
    rollout ends)."""
    n_step: int = 5
    """n of the n-step estimator (advantage=nstep)."""
    whole_episodes: bool = False
    """Roll out whole episodes: every update resets the environments and runs each to the end
    of its first episode (num_steps must cover the episode limit); the steps after that end are
    masked out of the loss and the statistics. An update still counts num_envs * num_steps
    env steps."""
    baseline: Literal["none", "mean", "value"] = "value"
    """REINFORCE's baseline: none (plain REINFORCE; a truncated episode's return is cut there),
    mean (a running mean of the returns), value (a learned V(s); truncation bootstraps from
    it). Every other agent uses the learned value."""
    baseline_decay: float = 0.9
    """Decay of the running-mean baseline (baseline=mean): m <- decay m + (1 - decay) mean(G)."""
    critic: Literal["v", "q"] = "v"
    """The one-step actor-critic's critic (algo=ac): v, a state value V(s) (TD residual as the
    advantage); q, an action value Q(s, a) with a SARSA target. Other agents use v."""
    termination_reward: float | None = None
    """Replace the reward of every step that terminates an episode by this value (reward
    shaping, e.g. -10 on CartPole as in DA2C); never applied on truncation. Reported returns
    and evaluations stay the environment's own."""
    clip_eps: float = traced(0.2)
    """PPO's probability-ratio clip range."""
    clip_value: bool = False
    """Clip the value update around the rollout's values (PPO)."""
    value_clip_eps: float = traced(0.2)
    """Clip range of the value update when clip_value is on."""
    ent_coef: float = traced(0.01)
    """Weight of the entropy bonus."""
    vf_coef: float = traced(0.5)
    """Weight of the value loss."""
    max_grad_norm: float = traced(0.5)
    """Clip gradients to this global norm."""
    normalize_advantages: bool = True
    """Standardise advantages per minibatch."""
    normalize_observations: bool = False
    """Normalise observations by running mean and std (kept in the state)."""
    scale_rewards: bool = False
    """Divide rewards by the running std of the discounted return."""
    optimizer: Literal["adam", "rmsprop"] = "adam"
    """Optimizer (A2C's classic choice is rmsprop)."""
    optimizer_eps: float = 1e-5
    """Epsilon of Adam / RMSprop."""
    network: NetworkConfig = NetworkConfig()  # noqa: RUF009 (frozen, hence safe to share)
    """Actor-critic architecture."""

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.batch_size

    def hyperparams(self) -> Hyperparams:
        """The traced fields as float32 scalars (`vmap` a stack of these for a sweep)."""
        return Hyperparams(
            **{name: jnp.float32(getattr(self, name)) for name in Hyperparams._fields}
        )

    def validate(self, spec: EnvSpec | None = None) -> EnvSpec:
        """Checks the fields every agent shares; raises `ValueError` naming the field, its value
        and the fix. The agent checks its own (`OnPolicyAgent.validate`).

        Builds the environment (cheap, nothing is compiled) to check action-space-specific
        options, and returns its `EnvSpec`.
        """
        check_env_name(self.env)
        for name, allowed in (("advantage", ("gae", "nstep", "mc")),
                              ("baseline", ("none", "mean", "value")), ("critic", ("v", "q"))):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"{name}={getattr(self, name)!r} is not one of "
                    f"{', '.join(repr(a) for a in allowed)}; pass e.g. {flag(name)} {allowed[0]}"
                )
        if self.optimizer not in ("adam", "rmsprop"):
            raise ValueError(f"optimizer={self.optimizer!r} is not one of 'adam', 'rmsprop'")
        for name in ("total_timesteps", "num_envs", "num_steps", "update_epochs",
                     "num_minibatches"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"{name}={value!r} must be a positive integer; pass e.g. "
                    f"{flag(name)} {getattr(PPOA2CConfig(), name)}"
                )
        check_positive("learning_rate", self.learning_rate, "typical values are 1e-4 to 1e-3")
        check_unit_interval("gamma", self.gamma)
        check_unit_interval("gae_lambda", self.gae_lambda)
        check_nonnegative("ent_coef", self.ent_coef)
        check_nonnegative("vf_coef", self.vf_coef)
        check_positive("max_grad_norm", self.max_grad_norm, "e.g. --max-grad-norm 0.5")
        check_positive("optimizer_eps", self.optimizer_eps, "e.g. --optimizer-eps 1e-5")
        if spec is None:
            env, env_params = make_env(self.env)
            spec = env_spec(env, env_params, self.env)
        self.network.validate(spec)
        if self.clip_value and self.value_clip_eps <= 0:
            raise ValueError(
                f"value_clip_eps={self.value_clip_eps} must be positive when clip_value=True; "
                "use e.g. --value-clip-eps 0.2 or drop --clip-value"
            )
        if self.num_steps % self.num_minibatches:
            raise ValueError(
                f"num_minibatches={self.num_minibatches} does not divide num_steps="
                f"{self.num_steps}; each minibatch takes num_steps / num_minibatches random "
                "steps of every environment (so results do not depend on how environments are "
                "split over devices); choose a divisor of num_steps"
            )
        if self.whole_episodes and self.num_steps < spec.max_episode_steps:
            raise ValueError(
                f"num_steps={self.num_steps} is shorter than {self.env}'s episode limit "
                f"({spec.max_episode_steps} steps), so whole_episodes=True cannot run every "
                f"episode to its end; pass --num-steps {spec.max_episode_steps}"
            )
        if self.baseline != "value" and self.algo != "reinforce":
            raise ValueError(
                f"baseline={self.baseline!r} is REINFORCE's option; algo={self.algo!r} learns a "
                "value baseline; drop --baseline or use --algo reinforce"
            )
        if self.critic != "v" and self.algo != "ac":
            raise ValueError(
                f"critic={self.critic!r} is the one-step actor-critic's option; algo="
                f"{self.algo!r} learns V(s); drop --critic or use --algo ac"
            )
        if not 0.0 <= self.baseline_decay < 1.0:
            raise ValueError(
                f"baseline_decay={self.baseline_decay} must lie in [0, 1); pass e.g. "
                "--baseline-decay 0.9"
            )
        if self.termination_reward is not None and not math.isfinite(self.termination_reward):
            raise ValueError(
                f"termination_reward={self.termination_reward} must be a finite number; pass "
                "e.g. --termination-reward -10 or leave it out"
            )
        if self.advantage == "nstep" and self.n_step < 1:
            raise ValueError(f"n_step={self.n_step} must be >= 1 for advantage='nstep'")
        if self.num_updates < 1:
            raise ValueError(
                f"total_timesteps={self.total_timesteps} is smaller than one batch "
                f"(num_envs * num_steps = {self.batch_size}); raise --total-timesteps"
            )
        return spec


class Hyperparams(NamedTuple):
    """The traced hyperparameters of `PPOA2CConfig`, each a `[]` float32 (or batched) array."""

    learning_rate: jax.Array
    gamma: jax.Array
    gae_lambda: jax.Array
    clip_eps: jax.Array
    value_clip_eps: jax.Array
    ent_coef: jax.Array
    vf_coef: jax.Array
    max_grad_norm: jax.Array


if set(traced_fields(PPOA2CConfig)) != set(Hyperparams._fields):  # pragma: no cover
    raise TypeError("PPOA2CConfig's traced fields and Hyperparams disagree")


class TrainState(NamedTuple):
    """The whole state of an on-policy run, one pytree.

    Attributes:
      params: actor-critic parameters.
      opt_state: optax state (its step count drives learning-rate annealing).
      env: environment states, current observations, normaliser statistics.
      key: PRNG key (raw `uint32[2]`).
      update_step: `[]` int32, updates done so far.
      agent_state: the agent's own state (`()`, no leaves, for most).
    """

    params: Any
    opt_state: optax.OptState
    env: EnvCarry
    key: jax.Array
    update_step: jax.Array
    agent_state: Any = ()


class Batch(NamedTuple):
    """A rollout ready for SGD, every field `[T, B, ...]` (a minibatch: `[T / M * B, ...]`).

    `weight` is None (every step counts) or `[T, B]` float32: 1 for the steps of the episodes a
    whole-episode rollout keeps, 0 for the steps after them (the losses weight by it).
    """

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    advantage: jax.Array
    target: jax.Array
    weight: jax.Array | None = None
