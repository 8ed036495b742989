"""Soft Actor-Critic (SAC) on gymnax environments with continuous actions.

SAC learns a stochastic policy that maximises the return plus α times its entropy ("Soft
Actor-Critic: Off-Policy Maximum Entropy Deep Reinforcement Learning with a Stochastic Actor",
Haarnoja et al. 2018, https://arxiv.org/abs/1801.01290), here in the form of "Soft Actor-Critic
Algorithms and Applications" (Haarnoja et al. 2018, https://arxiv.org/abs/1812.05905): twin
Q-networks with target copies, a tanh-squashed Gaussian policy and an automatically tuned
temperature α. Every gradient step, on a minibatch of stored transitions `(s, a, r, s')`:

1. critics: `y = r + γ (1 - terminated) (min_k Q'_k(s', a') - α log π(a'|s'))`, `a' ~ π(·|s')`;
   both critics regress on y (`losses.sac_target`, `losses.critic_loss`);
2. actor: minimise `E[α log π(a|s) - min_k Q_k(s, a)]`, `a ~ π(·|s)` reparametrised
   (`losses.sac_actor_loss`);
3. temperature (`autotune_alpha`): minimise `-log α (log π(a|s) + H̄)` with the target entropy
   `H̄` (default `-action_dim`; `losses.temperature_loss`);
4. target critics: Polyak averaging with step `tau`.

The environment loop, replay buffer and chunking are `acjax.agents.offpolicy.loop`'s. Run it
from the shell with

    python -m acjax.sac --env Pendulum-v1 [--help]
"""

from __future__ import annotations

import dataclasses
import math
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
    critic_update,
    make_offpolicy_train,
    make_optimizer,
)
from acjax.core import offpolicy_losses as losses
from acjax.core.config import check_positive, traced, traced_fields
from acjax.envs import EnvSpec
from acjax.networks import (
    QEnsemble,
    SquashedGaussianActor,
    make_q_ensemble,
    make_squashed_gaussian_actor,
)

__all__ = [
    "Hyperparams",
    "SACConfig",
    "SACNetworks",
    "SACOptState",
    "SACParams",
    "make_agent",
    "make_train",
]


@dataclasses.dataclass(frozen=True)
class SACConfig(OffPolicyConfig):
    """Everything that defines a SAC run (shared fields: `acjax.agents.offpolicy.config.OffPolicyConfig`)."""

    algo: Literal["sac"] = "sac"
    """Soft Actor-Critic."""
    alpha_lr: float = traced(3e-4)
    """Adam step size of the temperature's logarithm (with autotune_alpha)."""
    autotune_alpha: bool = True
    """Tune the temperature α towards the target entropy; off: α stays init_alpha."""
    init_alpha: float = 1.0
    """Initial (or, without autotune_alpha, fixed) temperature α > 0."""
    target_entropy: float | None = None
    """Entropy the temperature tuning aims at (None: -action_dim)."""

    def hyperparams(self) -> Hyperparams:
        """The traced fields as float32 scalars (`vmap` a stack of these for a sweep)."""
        return Hyperparams(
            **{name: jnp.float32(getattr(self, name)) for name in Hyperparams._fields}
        )

    def validate(self, spec: EnvSpec | None = None) -> EnvSpec:
        """Checks every field; raises `ValueError` naming the field, its value and the fix.

        Builds the environment (cheap, nothing is compiled) and returns its `EnvSpec`.
        """
        if self.algo != "sac":
            raise ValueError(f"algo={self.algo!r} is not 'sac'; TD3 and DDPG are in acjax.td3")
        spec = self.validate_common(spec)
        check_positive("init_alpha", self.init_alpha, "e.g. --init-alpha 1.0")
        if self.autotune_alpha:
            check_positive("alpha_lr", self.alpha_lr, "typical values are 1e-4 to 1e-3")
        if self.target_entropy is not None and not math.isfinite(self.target_entropy):
            raise ValueError(
                f"target_entropy={self.target_entropy!r} must be a finite number; pass e.g. "
                f"--target-entropy {-float(spec.num_actions)} or leave it out for -action_dim"
            )
        return spec


class Hyperparams(NamedTuple):
    """The traced hyperparameters of `SACConfig`, each a `[]` float32 (or batched) array."""

    gamma: jax.Array
    tau: jax.Array
    actor_lr: jax.Array
    critic_lr: jax.Array
    alpha_lr: jax.Array


if set(traced_fields(SACConfig)) != set(Hyperparams._fields):  # pragma: no cover
    raise TypeError("SACConfig's traced fields and Hyperparams disagree")


class SACParams(NamedTuple):
    """SAC's parameters.

    Attributes:
      actor: the squashed Gaussian policy's parameters.
      critic: the twin critics' parameters, leaves `[2, ...]`.
      target_critic: their Polyak averages, leaves `[2, ...]`.
      log_alpha: `[]` float32, log of the temperature α.
    """

    actor: Any
    critic: Any
    target_critic: Any
    log_alpha: jax.Array


class SACOptState(NamedTuple):
    """Adam states of the actor, the critics and the temperature."""

    actor: optax.OptState
    critic: optax.OptState
    alpha: optax.OptState


class SACNetworks(NamedTuple):
    """The actor's and the critics' pure functions."""

    actor: SquashedGaussianActor
    critic: QEnsemble


def make_agent(config: SACConfig, spec: EnvSpec) -> Agent:
    """SAC's networks and gradient step for `acjax.agents.offpolicy.loop.make_offpolicy_train`."""
    actor = make_squashed_gaussian_actor(spec, config.network)
    critic = make_q_ensemble(spec, config.network, num_critics=2)
    target_entropy = (
        -float(spec.num_actions) if config.target_entropy is None else config.target_entropy
    )

    def optimizers(hp: Hyperparams):
        return (
            make_optimizer(hp.actor_lr, config.max_grad_norm),
            make_optimizer(hp.critic_lr, config.max_grad_norm),
            optax.adam(hp.alpha_lr),
        )

    def init(key, obs, action, hp: Hyperparams):
        actor_key, critic_key = jax.random.split(key)
        actor_params = actor.init(actor_key, obs)
        critic_params = critic.init(critic_key, obs, action)
        log_alpha = jnp.float32(math.log(config.init_alpha))
        params = SACParams(actor_params, critic_params, critic_params, log_alpha)
        actor_opt, critic_opt, alpha_opt = optimizers(hp)
        opt_state = SACOptState(
            actor_opt.init(actor_params), critic_opt.init(critic_params),
            alpha_opt.init(log_alpha),
        )
        return params, opt_state

    def sample(params: SACParams, obs, key, hp=None):
        return actor.apply(params.actor, obs).sample(key)

    def explore(params: SACParams, obs, noise, key, hp: Hyperparams):
        return sample(params, obs, key), noise

    def greedy(params: SACParams, obs):
        return actor.apply(params.actor, obs).mode()

    def temperature(log_alpha, log_prob):
        return losses.temperature_loss(log_alpha, log_prob, target_entropy=target_entropy)

    def actor_loss(actor_params, critic_params, obs, key, alpha):
        action, log_prob = actor.apply(actor_params, obs).sample_and_log_prob(key)
        q = critic.apply(jax.lax.stop_gradient(critic_params), obs, action)
        loss, metrics = losses.sac_actor_loss(log_prob, q, alpha=alpha, ensemble_axis=0)
        return loss, {**metrics, "log_prob": jax.lax.stop_gradient(log_prob)}

    def learn(params: SACParams, opt_state: SACOptState, batch: Transition, key, count, index,
              hp: Hyperparams):
        del count, index  # every step updates the critics, the actor and the temperature
        actor_opt, critic_opt, alpha_opt = optimizers(hp)
        next_key, actor_key = jax.random.split(key)
        alpha = jnp.exp(params.log_alpha)
        next_action, next_log_prob = actor.apply(params.actor, batch.next_obs).sample_and_log_prob(
            next_key
        )
        q_next = critic.apply(params.target_critic, batch.next_obs, next_action)  # [2, N]
        target = losses.sac_target(
            batch.reward, batch.terminated, q_next, next_log_prob, gamma=hp.gamma, alpha=alpha,
            ensemble_axis=0,
        )
        critic_params, critic_state, critic_metrics = critic_update(
            critic, critic_opt, params.critic, opt_state.critic, batch, target
        )
        actor_params, actor_state, actor_metrics = gradient_update(
            actor_loss, actor_opt, params.actor, opt_state.actor, critic_params, batch.obs,
            actor_key, alpha,
        )
        log_prob = actor_metrics.pop("log_prob")
        log_alpha, alpha_state = params.log_alpha, opt_state.alpha
        metrics = {
            **critic_metrics,
            "actor_loss": actor_metrics["sac_actor_loss"],
            "actor_grad_norm": actor_metrics["grad_norm"],
            "entropy": actor_metrics["sac_actor_neg_log_prob"],
            "alpha": alpha,
        }
        if config.autotune_alpha:
            log_alpha, alpha_state, alpha_metrics = gradient_update(
                temperature, alpha_opt, params.log_alpha, opt_state.alpha, log_prob,
            )
            metrics["alpha_loss"] = alpha_metrics["temperature_loss"]
        target_critic = losses.polyak_update(critic_params, params.target_critic, tau=hp.tau)
        new_params = SACParams(actor_params, critic_params, target_critic, log_alpha)
        return new_params, SACOptState(actor_state, critic_state, alpha_state), metrics

    return Agent(SACNetworks(actor, critic), init, explore, greedy, sample, learn)


def make_train(
    config: SACConfig, *, num_reports: int = 20, axis_name: str | None = None
) -> Trainer:
    """Builds SAC's pure training functions (the config is validated first, before tracing).

    Args:
      config: the run's configuration.
      num_reports: how many chunks the host loop should see (see `acjax.agents.onpolicy.loop.make_train`).
      axis_name: must be None (an agent's replay buffer is not split over devices).
    """
    spec = config.validate()
    return make_offpolicy_train(
        config, spec, make_agent(config, spec), num_reports=num_reports, axis_name=axis_name
    )
