"""Off-policy actor-critic networks (SAC, TD3, DDPG): Q-ensembles and actors.

An ensemble of K Q-networks `Q(s, a)` whose parameters are stacked along a leading axis and
evaluated with one `vmap` over that axis (K = 2: the twin critics of TD3 and SAC), a
deterministic actor `tanh(f(s))` and a tanh-squashed Gaussian actor. Their actions live in
[-1, 1]; the trainer rescales them to the environment's bounds. They use the fan-in uniform
initialisation of the reference implementations (PyTorch's default).

Observations of any shape are flattened over their trailing `len(obs_shape)` axes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from acjax.core.distributions import TanhGaussian
from acjax.envs import EnvSpec
from acjax.networks.layers import ACTIVATIONS, Activation, Params

__all__ = [
    "SAC_LOG_STD_MAX",
    "SAC_LOG_STD_MIN",
    "DeterministicActor",
    "DeterministicActorModule",
    "GaussianActorModule",
    "OffPolicyNetworkConfig",
    "QEnsemble",
    "QNetwork",
    "SquashedGaussianActor",
    "make_deterministic_actor",
    "make_q_ensemble",
    "make_squashed_gaussian_actor",
]


SAC_LOG_STD_MIN, SAC_LOG_STD_MAX = -5.0, 2.0


@dataclasses.dataclass(frozen=True)
class OffPolicyNetworkConfig:
    """Shape of the off-policy actor and critics (all fields static: they fix parameter shapes)."""

    hidden_sizes: tuple[int, ...] = (256, 256)
    """Widths of the actor's hidden layers."""
    critic_hidden_sizes: tuple[int, ...] = ()
    """Widths of each critic's hidden layers; empty: same as the actor's."""
    activation: Activation = "relu"
    """Hidden-layer nonlinearity."""

    @property
    def critic_sizes(self) -> tuple[int, ...]:
        return tuple(self.critic_hidden_sizes or self.hidden_sizes)

    def validate(self, prefix: str = "network") -> None:
        """Raises `ValueError` naming the field, its value and the fix."""
        for name in ("hidden_sizes", "critic_hidden_sizes"):
            sizes = getattr(self, name)
            if any(int(h) < 1 for h in sizes):
                raise ValueError(
                    f"{prefix}.{name}={sizes!r} has a non-positive width; use positive integers, "
                    f"e.g. --{prefix}.{name.replace('_', '-')} 256 256"
                )
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"{prefix}.activation={self.activation!r} is not one of "
                f"{', '.join(repr(a) for a in ACTIVATIONS)}"
            )


def _fan_in_dense(features: int, name: str | None = None) -> nn.Dense:
    # PyTorch's nn.Linear default for the kernel (uniform in +-1/sqrt(fan_in)), zero bias.
    return nn.Dense(
        features, kernel_init=nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"),
        name=name,
    )


class _FanInMLP(nn.Module):
    """Hidden layers with fan-in uniform initialisation: `[..., in] -> [..., hidden[-1]]`."""

    hidden_sizes: Sequence[int]
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for width in self.hidden_sizes:
            x = act(_fan_in_dense(width)(x))
        return x


class QNetwork(nn.Module):
    """`Q(s, a)`: the concatenation `[s, a]` through an MLP to one output, `[...]`."""

    hidden_sizes: Sequence[int]
    activation: str = "relu"

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        x = jnp.concatenate([obs, action.astype(obs.dtype)], axis=-1)
        x = _FanInMLP(self.hidden_sizes, self.activation, name="trunk")(x)
        return _fan_in_dense(1, "q_head")(x)[..., 0]


class DeterministicActorModule(nn.Module):
    """`mu(s) = tanh(f(s))`, `[..., action_dim]` in (-1, 1)."""

    hidden_sizes: Sequence[int]
    action_dim: int
    activation: str = "relu"

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        h = _FanInMLP(self.hidden_sizes, self.activation, name="trunk")(obs)
        return jnp.tanh(_fan_in_dense(self.action_dim, "action_head")(h))


class GaussianActorModule(nn.Module):
    """Mean and log-std `[..., action_dim]` of the pre-tanh Gaussian of a SAC policy.

    The log-std head is squashed smoothly into `[SAC_LOG_STD_MIN, SAC_LOG_STD_MAX]` by a tanh.
    """

    hidden_sizes: Sequence[int]
    action_dim: int
    activation: str = "relu"

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = _FanInMLP(self.hidden_sizes, self.activation, name="trunk")(obs)
        mean = _fan_in_dense(self.action_dim, "mean_head")(h)
        raw = jnp.tanh(_fan_in_dense(self.action_dim, "log_std_head")(h))
        log_std = SAC_LOG_STD_MIN + 0.5 * (SAC_LOG_STD_MAX - SAC_LOG_STD_MIN) * (raw + 1.0)
        return mean, log_std


class QEnsemble(NamedTuple):
    """K Q-networks with stacked parameters (leaves `[K, ...]`), evaluated in one pass.

    Attributes:
      init: `(key, obs[*obs_shape], action[action_dim]) -> params` with leaves `[K, ...]`
        (each critic from its own key).
      apply: `(params, obs[..., *obs_shape], action[..., action_dim]) -> q[K, ...]`, float32:
        every critic on the same batch, one `vmap` over the parameter axis.
      num_critics: K.
    """

    init: Callable[[chex.PRNGKey, jax.Array, jax.Array], Params]
    apply: Callable[[Params, jax.Array, jax.Array], jax.Array]
    num_critics: int


class DeterministicActor(NamedTuple):
    """A deterministic policy (TD3, DDPG).

    Attributes:
      init: `(key, obs[*obs_shape]) -> params`.
      apply: `(params, obs[..., *obs_shape]) -> action[..., action_dim]` in (-1, 1).
    """

    init: Callable[[chex.PRNGKey, jax.Array], Params]
    apply: Callable[[Params, jax.Array], jax.Array]


class SquashedGaussianActor(NamedTuple):
    """A stochastic policy with actions in (-1, 1) (SAC).

    Attributes:
      init: `(key, obs[*obs_shape]) -> params`.
      apply: `(params, obs[..., *obs_shape]) -> TanhGaussian` with batch shape `[...]`.
    """

    init: Callable[[chex.PRNGKey, jax.Array], Params]
    apply: Callable[[Params, jax.Array], TanhGaussian]


def _flattener(spec: EnvSpec) -> Callable[[jax.Array], jax.Array]:
    obs_ndim = len(spec.obs_shape)

    def flatten(obs: jax.Array) -> jax.Array:
        obs = obs.astype(jnp.float32)
        return obs.reshape(obs.shape[: obs.ndim - obs_ndim] + (-1,))

    return flatten


def _check_continuous(spec: EnvSpec, what: str) -> None:
    if spec.discrete:
        raise ValueError(
            f"{what} needs a continuous (Box) action space; {spec.name} has "
            f"{spec.describe_action_space()}"
        )


def make_q_ensemble(
    spec: EnvSpec, config: OffPolicyNetworkConfig = OffPolicyNetworkConfig(), num_critics: int = 2
) -> QEnsemble:
    """Builds `num_critics` Q-networks `Q(s, a)` for a continuous-action environment."""
    _check_continuous(spec, "a Q-network over actions")
    if num_critics < 1:
        raise ValueError(f"num_critics={num_critics} must be >= 1")
    module = QNetwork(config.critic_sizes, config.activation)
    flatten = _flattener(spec)

    def init(key, obs, action):
        keys = jax.random.split(key, num_critics)
        one = lambda k: module.init(k, flatten(obs), action.astype(jnp.float32))["params"]
        return jax.vmap(one)(keys)

    def apply(params, obs, action):
        chex.assert_shape(action, obs.shape[: obs.ndim - len(spec.obs_shape)] + (spec.num_actions,))
        x = flatten(obs)
        return jax.vmap(lambda p: module.apply({"params": p}, x, action))(params)

    return QEnsemble(init, apply, num_critics)


def make_deterministic_actor(
    spec: EnvSpec, config: OffPolicyNetworkConfig = OffPolicyNetworkConfig()
) -> DeterministicActor:
    """Builds the deterministic actor `tanh(f(s))` for a continuous-action environment."""
    _check_continuous(spec, "a deterministic actor")
    module = DeterministicActorModule(tuple(config.hidden_sizes), spec.num_actions,
                                      config.activation)
    flatten = _flattener(spec)

    def init(key, obs):
        return module.init(key, flatten(obs))["params"]

    def apply(params, obs):
        return module.apply({"params": params}, flatten(obs))

    return DeterministicActor(init, apply)


def make_squashed_gaussian_actor(
    spec: EnvSpec, config: OffPolicyNetworkConfig = OffPolicyNetworkConfig()
) -> SquashedGaussianActor:
    """Builds SAC's tanh-squashed Gaussian actor for a continuous-action environment."""
    _check_continuous(spec, "a squashed Gaussian actor")
    module = GaussianActorModule(tuple(config.hidden_sizes), spec.num_actions, config.activation)
    flatten = _flattener(spec)

    def init(key, obs):
        return module.init(key, flatten(obs))["params"]

    def apply(params, obs):
        return TanhGaussian(*module.apply({"params": params}, flatten(obs)))

    return SquashedGaussianActor(init, apply)
