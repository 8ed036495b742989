"""TD3 and DDPG: deterministic-policy actor-critics on gymnax environments with continuous actions.

DDPG ("Continuous control with deep reinforcement learning", Lillicrap et al. 2015,
https://arxiv.org/abs/1509.02971) learns a deterministic policy `mu(s)` by the deterministic
policy gradient (Silver et al. 2014) through a critic `Q(s, a)`, with target copies of both
networks and Ornstein-Uhlenbeck exploration noise (theta 0.15, reset at episode ends). TD3
("Addressing Function Approximation Error in Actor-Critic Methods", Fujimoto et al. 2018,
https://arxiv.org/abs/1802.09477) adds three fixes against overestimation: twin critics whose
minimum forms the target, clipped Gaussian noise on the target action (target policy
smoothing) and actor and target updates only every `policy_delay` critic updates. Every
gradient step, on a minibatch of stored transitions `(s, a, r, s')`:

1. critics: `y = r + γ (1 - terminated) min_k Q'_k(s', ã')`, with `ã' = mu'(s')` (DDPG) or
   `clip(mu'(s') + clip(ε, -c, c), -1, 1)`, `ε ~ N(0, target_noise²)` (TD3;
   `losses.target_policy_smoothing`, `losses.td3_target`, `losses.critic_loss`);
2. every `policy_delay`-th step (DDPG: every step): the actor ascends `Q_1(s, mu(s))`
   (`losses.dpg_actor_loss`), then the target actor and critics move by Polyak averaging
   with step `tau`.

`--algo td3` (two critics, smoothing, delay 2, Gaussian exploration) or `--algo ddpg` (one
critic, no smoothing, delay 1, Ornstein-Uhlenbeck exploration by default). The environment
loop, replay buffer and chunking are `acjax.agents.offpolicy.loop`'s. Run it from the shell
with

    python -m acjax.td3 --env Pendulum-v1 [--algo ddpg] [--help]
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from acjax.agents.base import Trainer
from acjax.agents.common import gradient_update
from acjax.agents.offpolicy.config import OffPolicyConfig
from acjax.agents.offpolicy.loop import (
    Agent,
    Transition,
    cond_update,
    critic_update,
    make_offpolicy_train,
    make_optimizer,
)
from acjax.core import offpolicy_losses as losses
from acjax.core.config import check_nonnegative, traced, traced_fields
from acjax.envs import EnvSpec
from acjax.networks import DeterministicActor, QEnsemble, make_deterministic_actor, make_q_ensemble

__all__ = [
    "Hyperparams",
    "TD3Config",
    "TD3Networks",
    "TD3OptState",
    "TD3Params",
    "make_agent",
    "make_train",
]

Algo = Literal["td3", "ddpg"]


@dataclasses.dataclass(frozen=True)
class TD3Config(OffPolicyConfig):
    """Everything that defines a TD3 or DDPG run (shared fields: `OffPolicyConfig`)."""

    algo: Algo = "td3"
    """td3: twin critics, target policy smoothing, delayed actor; ddpg: one critic, neither."""
    policy_delay: int = 2
    """Critic updates per actor (and target) update: 2 for TD3, 1 for DDPG."""
    exploration_noise: Literal["gaussian", "ou"] = "gaussian"
    """Behaviour noise added to mu(s): independent Gaussian, or Ornstein-Uhlenbeck (kept per
    environment in the training state, reset at episode ends)."""
    exploration_noise_std: float = traced(0.1)
    """Standard deviation of the Gaussian noise, or sigma of the Ornstein-Uhlenbeck process
    (in the policy's action units, [-1, 1])."""
    ou_theta: float = traced(0.15)
    """Mean reversion of the Ornstein-Uhlenbeck noise: x <- x - theta x + sigma N(0, 1)."""
    target_noise: float = traced(0.2)
    """TD3: standard deviation of the target policy smoothing noise (0 for DDPG)."""
    target_noise_clip: float = traced(0.5)
    """TD3: the smoothing noise is clipped to [-target_noise_clip, target_noise_clip]."""

    @property
    def num_critics(self) -> int:
        return 2 if self.algo == "td3" else 1

    def hyperparams(self) -> Hyperparams:
        """The traced fields as float32 scalars (`vmap` a stack of these for a sweep)."""
        return Hyperparams(
            **{name: jnp.float32(getattr(self, name)) for name in Hyperparams._fields}
        )

    def validate(self, spec: EnvSpec | None = None) -> EnvSpec:
        """Checks every field; raises `ValueError` naming the field, its value and the fix.

        Builds the environment (cheap, nothing is compiled) and returns its `EnvSpec`.
        """
        if self.algo not in ("td3", "ddpg"):
            raise ValueError(
                f"algo={self.algo!r} is not one of 'td3', 'ddpg' (SAC is python -m acjax.sac)"
            )
        spec = self.validate_common(spec)
        if self.exploration_noise not in ("gaussian", "ou"):
            raise ValueError(
                f"exploration_noise={self.exploration_noise!r} is not one of 'gaussian', 'ou'"
            )
        if not isinstance(self.policy_delay, int) or self.policy_delay < 1:
            raise ValueError(
                f"policy_delay={self.policy_delay!r} must be an integer >= 1 (critic updates "
                "per actor update); pass e.g. --policy-delay 2"
            )
        check_nonnegative("exploration_noise_std", self.exploration_noise_std,
                          "pass e.g. --exploration-noise-std 0.1")
        if not (isinstance(self.ou_theta, (int, float)) and 0.0 < self.ou_theta <= 1.0):
            raise ValueError(
                f"ou_theta={self.ou_theta!r} must lie in (0, 1] (the Ornstein-Uhlenbeck "
                "noise's pull towards 0 per step); pass e.g. --ou-theta 0.15"
            )
        check_nonnegative("target_noise", self.target_noise, "pass e.g. --target-noise 0.2")
        check_nonnegative("target_noise_clip", self.target_noise_clip,
                          "pass e.g. --target-noise-clip 0.5")
        if self.algo == "ddpg" and self.policy_delay != 1:
            raise ValueError(
                f"algo='ddpg' updates the actor after every critic update, but policy_delay="
                f"{self.policy_delay}; set --policy-delay 1 (or use --algo td3)"
            )
        if self.algo == "ddpg" and self.target_noise != 0:
            raise ValueError(
                f"algo='ddpg' has no target policy smoothing, but target_noise="
                f"{self.target_noise}; set --target-noise 0 (or use --algo td3)"
            )
        return spec


class Hyperparams(NamedTuple):
    """The traced hyperparameters of `TD3Config`, each a `[]` float32 (or batched) array."""

    gamma: jax.Array
    tau: jax.Array
    actor_lr: jax.Array
    critic_lr: jax.Array
    exploration_noise_std: jax.Array
    ou_theta: jax.Array
    target_noise: jax.Array
    target_noise_clip: jax.Array


if set(traced_fields(TD3Config)) != set(Hyperparams._fields):  # pragma: no cover
    raise TypeError("TD3Config's traced fields and Hyperparams disagree")


class TD3Params(NamedTuple):
    """TD3's / DDPG's parameters.

    Attributes:
      actor: the deterministic policy's parameters.
      critic: the critics' parameters, leaves `[K, ...]` (K = 2 for TD3, 1 for DDPG).
      target_actor: the actor's Polyak average.
      target_critic: the critics' Polyak averages, leaves `[K, ...]`.
    """

    actor: Any
    critic: Any
    target_actor: Any
    target_critic: Any


class TD3OptState(NamedTuple):
    """Adam states of the actor and the critics."""

    actor: optax.OptState
    critic: optax.OptState


class TD3Networks(NamedTuple):
    """The actor's and the critics' pure functions."""

    actor: DeterministicActor
    critic: QEnsemble


_DELAYED = ("actor_loss", "actor_grad_norm", "dq_da_norm", "q_policy_mean")


def make_agent(config: TD3Config, spec: EnvSpec) -> Agent:
    """TD3's (or DDPG's) networks and gradient step for `make_offpolicy_train`."""
    actor = make_deterministic_actor(spec, config.network)
    critic = make_q_ensemble(spec, config.network, num_critics=config.num_critics)
    delay, smoothing = config.policy_delay, config.algo == "td3"

    def optimizers(hp: Hyperparams):
        return (
            make_optimizer(hp.actor_lr, config.max_grad_norm),
            make_optimizer(hp.critic_lr, config.max_grad_norm),
        )

    def init(key, obs, action, hp: Hyperparams):
        actor_key, critic_key = jax.random.split(key)
        actor_params = actor.init(actor_key, obs)
        critic_params = critic.init(critic_key, obs, action)
        actor_opt, critic_opt = optimizers(hp)
        params = TD3Params(actor_params, critic_params, actor_params, critic_params)
        return params, TD3OptState(actor_opt.init(actor_params), critic_opt.init(critic_params))

    def greedy(params: TD3Params, obs):
        return actor.apply(params.actor, obs)

    def sample(params: TD3Params, obs, key, hp: Hyperparams):
        mu = greedy(params, obs)
        noise = hp.exploration_noise_std * jax.random.normal(key, mu.shape, mu.dtype)
        return jnp.clip(mu + noise, -1.0, 1.0)

    def explore(params: TD3Params, obs, noise, key, hp: Hyperparams):
        if config.exploration_noise == "gaussian":
            return sample(params, obs, key, hp), noise
        mu = greedy(params, obs)
        noise = noise - hp.ou_theta * noise + hp.exploration_noise_std * jax.random.normal(
            key, noise.shape, noise.dtype
        )
        return jnp.clip(mu + noise, -1.0, 1.0), noise

    def actor_loss(actor_params, first_critic, obs):
        action = actor.apply(actor_params, obs)
        q_sum, dq_da = jax.value_and_grad(
            lambda a: jnp.sum(critic.apply(first_critic, obs, a))
        )(action)
        loss, metrics = losses.dpg_actor_loss(action, dq_da)
        return loss, {**metrics, "q_policy_mean": q_sum / obs.shape[0]}

    def learn(params: TD3Params, opt_state: TD3OptState, batch: Transition, key, count, index,
              hp: Hyperparams):
        actor_opt, critic_opt = optimizers(hp)
        next_action = actor.apply(params.target_actor, batch.next_obs)
        if smoothing:
            next_action = losses.target_policy_smoothing(
                next_action, key, noise_std=hp.target_noise, noise_clip=hp.target_noise_clip
            )
        q_next = critic.apply(params.target_critic, batch.next_obs, next_action)  # [K, N]
        target = losses.td3_target(batch.reward, batch.terminated, q_next, gamma=hp.gamma,
                                   ensemble_axis=0)
        critic_params, critic_state, critic_metrics = critic_update(
            critic, critic_opt, params.critic, opt_state.critic, batch, target
        )

        def actor_step(operand):
            actor_params, actor_state, target_actor, target_critic = operand
            first_critic = jax.tree.map(lambda x: x[:1], jax.lax.stop_gradient(critic_params))
            actor_params, actor_state, metrics = gradient_update(
                actor_loss, actor_opt, actor_params, actor_state, first_critic, batch.obs
            )
            target_actor = losses.polyak_update(actor_params, target_actor, tau=hp.tau)
            target_critic = losses.polyak_update(critic_params, target_critic, tau=hp.tau)
            metrics = {
                "actor_loss": metrics["dpg_loss"],
                "actor_grad_norm": metrics["grad_norm"],
                "dq_da_norm": metrics["dpg_dq_da_norm"],
                "q_policy_mean": metrics["q_policy_mean"],
                "actor_updates": jnp.float32(1.0),
            }
            return (actor_params, actor_state, target_actor, target_critic), metrics

        operand = (params.actor, opt_state.actor, params.target_actor, params.target_critic)
        if delay == 1:
            operand, actor_metrics = actor_step(operand)
        else:
            # The step number within the iteration decides when the iteration's length is a
            # multiple of the delay (not batched across agents, so a real branch under vmap).
            step = index if config.gradient_steps % delay == 0 else count
            operand, actor_metrics = cond_update((step + 1) % delay == 0, actor_step, operand)
        actor_params, actor_state, target_actor, target_critic = operand
        metrics = {
            **critic_metrics,
            **actor_metrics,
        }
        new_params = TD3Params(actor_params, critic_params, target_actor, target_critic)
        return new_params, TD3OptState(actor_state, critic_state), metrics

    return Agent(TD3Networks(actor, critic), init, explore, greedy, sample, learn, _DELAYED)


def make_train(
    config: TD3Config, *, num_reports: int = 20, axis_name: str | None = None
) -> Trainer:
    """Builds TD3's / DDPG's pure training functions (the config is validated first).

    Args:
      config: the run's configuration.
      num_reports: how many chunks the host loop should see (see `acjax.agents.onpolicy.loop.make_train`).
      axis_name: must be None (an agent's replay buffer is not split over devices).
    """
    spec = config.validate()
    return make_offpolicy_train(
        config, spec, make_agent(config, spec), num_reports=num_reports, axis_name=axis_name
    )
