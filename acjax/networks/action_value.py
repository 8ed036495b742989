"""An actor with an action-value critic Q(s, a): the one-step actor-critic's Q variant.

The actor is the on-policy MLP policy (categorical or diagonal Gaussian, as in
`acjax.networks.actor_critic`); the critic is an MLP on the observation and the action side by
side: a one-hot action for discrete spaces, the action vector for continuous ones,

  Q_φ(s, a) = MLP_φ([s, onehot(a)])   or   MLP_φ([s, a]).

`value(params, obs)` is the policy's state value under that critic:

  V(s) = Σ_b π(b|s) Q(s, b)     (discrete, exact),
  V(s) = Q(s, μ(s))             (continuous, at the policy's mean),

which the shared rollout records as `value` and `next_value` (the Q agent computes its own
SARSA targets and advantages from `q_value`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from acjax.core.distributions import Categorical, DiagGaussian
from acjax.envs import EnvSpec
from acjax.networks.actor_critic import (
    Distribution,
    HeadSpec,
    NetworkConfig,
    PolicyHead,
    policy_head_apply,
)
from acjax.networks.layers import (
    ACTIVATIONS,
    MLP,
    Dense,
    Params,
    dense,
    dense_apply,
    mlp_apply,
    orthogonal_dense,
)

__all__ = ["ActorQCritic", "make_actor_q_critic"]


class _ActorQ(nn.Module):
    actor_hidden: tuple[int, ...]
    critic_hidden: tuple[int, ...]
    activation: str
    head: HeadSpec

    def setup(self):
        self.actor_trunk = MLP(self.actor_hidden, self.activation)
        self.policy_head = PolicyHead(*self.head)
        self.critic_trunk = MLP(self.critic_hidden, self.activation)
        self.q_head = orthogonal_dense(1, 1.0)

    def __call__(self, x, critic_in):
        return self.policy_head(self.actor_trunk(x)), self.q_head(self.critic_trunk(critic_in))


class ActorQCritic(NamedTuple):
    """Pure functions over a parameter pytree.

    Attributes:
      init: `(key, obs[*obs_shape]) -> params`.
      policy: `(params, obs[..., *obs_shape]) -> Distribution` with batch shape `[...]`.
      q_value: `(params, obs[..., *obs_shape], action[...] or [..., action_dim]) -> [...]`.
      action_values: `(params, obs[..., *obs_shape]) -> [..., num_actions]`, Q(s, b) for every
        action b (discrete action spaces only).
      value: `(params, obs[..., *obs_shape]) -> [...]`, the policy's V(s) under Q (above).
      policy_and_value: both at once.
    """

    init: Callable[[chex.PRNGKey, jax.Array], Params]
    policy: Callable[[Params, jax.Array], Distribution]
    q_value: Callable[[Params, jax.Array, jax.Array], jax.Array]
    action_values: Callable[[Params, jax.Array], jax.Array]
    value: Callable[[Params, jax.Array], jax.Array]
    policy_and_value: Callable[[Params, jax.Array], tuple[Distribution, jax.Array]]


def make_actor_q_critic(
    spec: EnvSpec, config: NetworkConfig | None = None, *, dense: Dense = dense
) -> ActorQCritic:
    """Builds an MLP actor and an MLP critic Q(s, a) for an environment's spaces.

    Uses `config.hidden_sizes` (actor), `config.critic_hidden_sizes` (critic; empty: the
    actor's), `config.activation` and the Gaussian head's `log_std` / `init_log_std`.

    Raises:
      ValueError: for shared or bounded networks (this critic has its own input) or another
        architecture.
    """
    config = NetworkConfig() if config is None else config
    for name, default in (("shared", False), ("value_head_hidden", ()), ("value_bound", None),
                          ("architecture", "mlp")):
        if getattr(config, name) != default:
            raise ValueError(
                f"network.{name}={getattr(config, name)!r} is not available with an action-value "
                f"critic (critic='q': separate MLPs on [s, a]); drop --network."
                f"{name.replace('_', '-')} or use --critic v"
            )
    head = HeadSpec(
        discrete=spec.discrete,
        num_actions=spec.num_actions,
        log_std=config.log_std or "state_independent",
        init_log_std=0.0 if config.init_log_std is None else float(config.init_log_std),
    )
    actor_hidden = tuple(config.hidden_sizes)
    critic_hidden = tuple(config.critic_hidden_sizes or config.hidden_sizes)
    module = _ActorQ(actor_hidden, critic_hidden, config.activation, head)
    act = ACTIVATIONS[config.activation]
    obs_ndim = len(spec.obs_shape)
    n = spec.num_actions

    def flatten(obs):
        obs = obs.astype(jnp.float32)
        return obs.reshape(obs.shape[: obs.ndim - obs_ndim] + (-1,))

    def encode(action):
        if spec.discrete:
            return jax.nn.one_hot(action, n, dtype=jnp.float32)
        return action.astype(jnp.float32)

    def init(key, obs):
        x = flatten(obs)
        a = jnp.zeros((), jnp.int32) if spec.discrete else jnp.zeros((n,), jnp.float32)
        return module.init(key, x, jnp.concatenate([x, encode(a)], -1))["params"]

    def policy(params, obs):
        h = mlp_apply(params.get("actor_trunk", {}), flatten(obs), len(actor_hidden), act, dense)
        out, log_std = policy_head_apply(params["policy_head"], h, head, dense)
        return Categorical(out) if spec.discrete else DiagGaussian(out, log_std)

    def q_of(params, x, a):
        z = jnp.concatenate([x, a], axis=-1)
        h = mlp_apply(params.get("critic_trunk", {}), z, len(critic_hidden), act, dense)
        return dense_apply(params["q_head"], h, dense)[..., 0]

    def q_value(params, obs, action):
        return q_of(params, flatten(obs), encode(action))

    def action_values(params, obs):
        if not spec.discrete:
            raise ValueError(f"action_values needs a discrete action space; {spec.name} has "
                             f"{spec.describe_action_space()}; use q_value")
        x = flatten(obs)
        eye = jnp.eye(n, dtype=jnp.float32)
        xs = jnp.broadcast_to(x[..., None, :], x.shape[:-1] + (n, x.shape[-1]))
        return q_of(params, xs, jnp.broadcast_to(eye, x.shape[:-1] + (n, n)))

    def value_from(params, obs, dist):
        if spec.discrete:
            return jnp.sum(dist.probs() * action_values(params, obs), axis=-1)
        return q_value(params, obs, dist.mode())

    def value(params, obs):
        return value_from(params, obs, policy(params, obs))

    def policy_and_value(params, obs):
        dist = policy(params, obs)
        return dist, value_from(params, obs, dist)

    return ActorQCritic(init, policy, q_value, action_values, value, policy_and_value)
