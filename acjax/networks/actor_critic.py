"""On-policy actor-critic networks (flax linen) and the pure functions the trainers call.

Two designs:

* separate actor and critic MLPs (the default): parameters `actor_trunk`, `policy_head`,
  `critic_trunk`, `value_head`;
* a shared trunk with a policy head and a value head (`shared=True`: `trunk`, `policy_head`,
  `value_head`); with
  `detach_critic=True` the value head sees the trunk's features through `stop_gradient`, so the
  critic's loss does not shape the shared representation (the "detached critic").

The value head may sit on hidden layers of its own (`value_head_hidden`, shared networks) and be
bounded, `V(s) = b tanh(head(h))` (`value_bound=b`): DA2C's detached, tanh-bounded critic. A
network of another form enters through the same seam: `architecture="linear_quadratic"` builds
the 1-D regulator's linear-Gaussian actor and quadratic critic (`acjax.networks.regulator`).

Discrete action spaces get a categorical head over logits; continuous ones a diagonal Gaussian
whose log-std is a free parameter (state-independent) or a second head (state-dependent).
Hidden layers use orthogonal init with gain sqrt(2), the policy head gain 0.01 and the value
head gain 1, as in the PPO reference implementation.

Observations of any shape are flattened over their trailing `len(obs_shape)` axes, so the same
functions take `[*obs_shape]`, `[B, *obs_shape]` or `[T, B, *obs_shape]`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from acjax.core.distributions import Categorical, DiagGaussian
from acjax.envs import EnvSpec
from acjax.networks.layers import (
    ACTIVATIONS,
    MLP,
    Activation,
    Dense,
    Params,
    dense,
    dense_apply,
    mlp_apply,
    orthogonal_dense,
)

__all__ = [
    "LOG_STD_MAX",
    "LOG_STD_MIN",
    "ActorCritic",
    "Distribution",
    "HeadSpec",
    "LogStdMode",
    "NetworkConfig",
    "PolicyHead",
    "SeparateActorCritic",
    "SharedActorCritic",
    "make_actor_critic",
    "policy_head_apply",
]

LogStdMode = Literal["state_independent", "state_dependent"]
Architecture = Literal["mlp", "linear_quadratic"]
Distribution = Categorical | DiagGaussian
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Shape of the actor-critic networks (all fields static: they fix parameter shapes)."""

    hidden_sizes: tuple[int, ...] = (64, 64)
    """Widths of the actor's hidden layers (and of the shared trunk)."""
    critic_hidden_sizes: tuple[int, ...] = ()
    """Widths of the critic's hidden layers; empty: same as the actor's."""
    activation: Activation = "tanh"
    """Hidden-layer nonlinearity."""
    shared: bool = False
    """One trunk with policy and value heads instead of two networks."""
    detach_critic: bool = False
    """With shared: the value loss does not train the trunk (detached critic)."""
    log_std: LogStdMode | None = None
    """Continuous actions only: state_independent (default) or state_dependent log-std."""
    init_log_std: float | None = None
    """Continuous actions only: initial log standard deviation (default 0; linear_quadratic:
    the initial log-variance is twice it)."""
    value_head_hidden: tuple[int, ...] = ()
    """With shared: hidden layers of the value head alone, between the trunk and its output."""
    value_bound: float | None = None
    """Bound the critic's output: V(s) = value_bound * tanh(head(h)) (a tanh-bounded critic)."""
    architecture: Architecture = "mlp"
    """mlp: the networks above; linear_quadratic: the 1-D regulator's actor mu(s) = theta1 s
    with a learned log-variance and critic V(s) = phi1 s + phi2 s^2 (acjax.networks.regulator;
    1-D observations and actions only)."""

    def validate(self, spec: EnvSpec, prefix: str = "network") -> None:
        """Raises `ValueError` naming the field, its value and the fix."""
        if self.architecture not in ("mlp", "linear_quadratic"):
            raise ValueError(
                f"{prefix}.architecture={self.architecture!r} is not one of 'mlp', "
                f"'linear_quadratic'; pass e.g. --{prefix}.architecture mlp"
            )
        if self.value_bound is not None and not self.value_bound > 0:
            raise ValueError(
                f"{prefix}.value_bound={self.value_bound!r} must be positive (the critic's "
                f"outputs lie in [-bound, bound]); pass e.g. --{prefix}.value-bound 20 or leave "
                "it out"
            )
        if self.value_head_hidden and not self.shared:
            raise ValueError(
                f"{prefix}.value_head_hidden={self.value_head_hidden!r} needs {prefix}.shared="
                f"True (a separate critic takes --{prefix}.critic-hidden-sizes); add "
                f"--{prefix}.shared or drop it"
            )
        if any(int(h) < 1 for h in self.value_head_hidden):
            raise ValueError(
                f"{prefix}.value_head_hidden={self.value_head_hidden!r} has a non-positive "
                "width; use positive integers"
            )
        for name in ("hidden_sizes", "critic_hidden_sizes"):
            sizes = getattr(self, name)
            if any(int(h) < 1 for h in sizes):
                raise ValueError(
                    f"{prefix}.{name}={sizes!r} has a non-positive width; use positive integers, "
                    "e.g. --network.hidden-sizes 64 64"
                )
        if not self.hidden_sizes and self.shared:
            raise ValueError(
                f"{prefix}.hidden_sizes=() with {prefix}.shared=True leaves no trunk to share; "
                "give at least one hidden layer"
            )
        if self.detach_critic and not self.shared:
            raise ValueError(
                f"{prefix}.detach_critic=True needs {prefix}.shared=True (separate networks share "
                "nothing to detach); add --network.shared or drop --network.detach-critic"
            )
        if self.shared and self.critic_hidden_sizes:
            raise ValueError(
                f"{prefix}.critic_hidden_sizes={self.critic_hidden_sizes!r} has no effect with "
                f"{prefix}.shared=True (both heads sit on the shared trunk); drop it"
            )
        if spec.discrete:
            for name in ("log_std", "init_log_std"):
                if getattr(self, name) is not None:
                    raise ValueError(
                        f"{prefix}.{name}={getattr(self, name)!r} applies to continuous action "
                        f"spaces; {spec.name} has {spec.describe_action_space()}; remove "
                        f"--{prefix}.{name.replace('_', '-')}"
                    )


class PolicyHead(nn.Module):
    """Features -> distribution parameters: logits `[..., n]` or `(mean, log_std)`."""

    discrete: bool
    num_actions: int
    log_std: str = "state_independent"
    init_log_std: float = 0.0

    @nn.compact
    def __call__(self, h: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        out = orthogonal_dense(self.num_actions, 0.01)(h)
        if self.discrete:
            return out, None
        if self.log_std == "state_dependent":
            log_std = orthogonal_dense(self.num_actions, 0.01, self.init_log_std)(h)
        else:
            log_std = self.param(
                "log_std", nn.initializers.constant(self.init_log_std), (self.num_actions,)
            )
            log_std = jnp.broadcast_to(log_std, out.shape)
        return out, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)


class HeadSpec(NamedTuple):
    """Hashable description of a `PolicyHead`."""

    discrete: bool
    num_actions: int
    log_std: str
    init_log_std: float


def policy_head_apply(
    params: Params, h: jax.Array, head: HeadSpec, layer: Dense = dense
) -> tuple[jax.Array, jax.Array | None]:
    """`PolicyHead.__call__` on its parameter tree: logits, or `(mean, clipped log_std)`."""
    out = dense_apply(params["Dense_0"], h, layer)
    if head.discrete:
        return out, None
    if head.log_std == "state_dependent":
        log_std = dense_apply(params["Dense_1"], h, layer)
    else:
        log_std = jnp.broadcast_to(params["log_std"], out.shape)
    return out, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)


def _bounded(v: jax.Array, bound: float | None) -> jax.Array:
    return v if bound is None else bound * jnp.tanh(v)


class SeparateActorCritic(nn.Module):
    """Two MLPs; `__call__` returns `(dist_params, value)`."""

    actor_hidden: Sequence[int]
    critic_hidden: Sequence[int]
    activation: str
    head: HeadSpec
    value_bound: float | None = None

    def setup(self):
        self.actor_trunk = MLP(self.actor_hidden, self.activation)
        self.policy_head = PolicyHead(*self.head)
        self.critic_trunk = MLP(self.critic_hidden, self.activation)
        self.value_head = orthogonal_dense(1, 1.0)

    def policy(self, x):
        return self.policy_head(self.actor_trunk(x))

    def value(self, x):
        return _bounded(self.value_head(self.critic_trunk(x))[..., 0], self.value_bound)

    def __call__(self, x):
        return self.policy(x), self.value(x)


class SharedActorCritic(nn.Module):
    """One trunk, two heads; `detach_critic` stops the value gradient at the trunk."""

    hidden: Sequence[int]
    activation: str
    head: HeadSpec
    detach_critic: bool = False
    value_hidden: Sequence[int] = ()
    value_bound: float | None = None

    def setup(self):
        self.trunk = MLP(self.hidden, self.activation)
        self.policy_head = PolicyHead(*self.head)
        if self.value_hidden:
            self.value_trunk = MLP(self.value_hidden, self.activation)
        self.value_head = orthogonal_dense(1, 1.0)

    def _value_from(self, h):
        if self.detach_critic:
            h = jax.lax.stop_gradient(h)
        if self.value_hidden:
            h = self.value_trunk(h)
        return _bounded(self.value_head(h)[..., 0], self.value_bound)

    def policy(self, x):
        return self.policy_head(self.trunk(x))

    def value(self, x):
        return self._value_from(self.trunk(x))

    def __call__(self, x):
        h = self.trunk(x)
        return self.policy_head(h), self._value_from(h)


class ActorCritic(NamedTuple):
    """Pure functions over a parameter pytree.

    Attributes:
      init: `(key, obs[*obs_shape]) -> params`.
      policy: `(params, obs[..., *obs_shape]) -> Distribution` with batch shape `[...]`.
      value: `(params, obs[..., *obs_shape]) -> [...]` float32.
      policy_and_value: both at once (one trunk pass for shared networks).
    """

    init: Callable[[chex.PRNGKey, jax.Array], Params]
    policy: Callable[[Params, jax.Array], Distribution]
    value: Callable[[Params, jax.Array], jax.Array]
    policy_and_value: Callable[[Params, jax.Array], tuple[Distribution, jax.Array]]


def make_actor_critic(
    spec: EnvSpec, config: NetworkConfig = NetworkConfig(), *, dense: Dense = dense
) -> ActorCritic:
    """Builds the actor-critic for an environment's observation and action spaces.

    `dense` is the layer the pure functions apply (`acjax.networks.layers.dense` by default;
    `acjax.cpu.dense.dense` is a drop-in with a faster gradient on CPU); `init` is flax's.
    `config.architecture="linear_quadratic"` returns `acjax.networks.regulator`'s networks.
    """
    if config.architecture == "linear_quadratic":
        from acjax.networks.regulator import make_linear_quadratic

        init_log_var = 0.0 if config.init_log_std is None else 2.0 * float(config.init_log_std)
        return make_linear_quadratic(spec, dense=dense, init_log_var=init_log_var)
    head = HeadSpec(
        discrete=spec.discrete,
        num_actions=spec.num_actions,
        log_std=config.log_std or "state_independent",
        init_log_std=0.0 if config.init_log_std is None else float(config.init_log_std),
    )
    if config.shared:
        module = SharedActorCritic(
            tuple(config.hidden_sizes), config.activation, head, config.detach_critic,
            tuple(config.value_head_hidden), config.value_bound,
        )
    else:
        module = SeparateActorCritic(
            tuple(config.hidden_sizes),
            tuple(config.critic_hidden_sizes or config.hidden_sizes),
            config.activation,
            head,
            config.value_bound,
        )
    obs_ndim = len(spec.obs_shape)

    def flatten(obs: jax.Array) -> jax.Array:
        obs = obs.astype(jnp.float32)
        return obs.reshape(obs.shape[: obs.ndim - obs_ndim] + (-1,))

    def to_dist(out) -> Distribution:
        loc, log_std = out
        return Categorical(loc) if spec.discrete else DiagGaussian(loc, log_std)

    act = ACTIVATIONS[config.activation]
    actor_trunk, critic_trunk = ("trunk", "trunk") if config.shared else (
        "actor_trunk", "critic_trunk")
    actor_layers = len(config.hidden_sizes)
    critic_layers = actor_layers if config.shared else len(
        config.critic_hidden_sizes or config.hidden_sizes)
    detach = config.shared and config.detach_critic

    # Applied as plain functions of the module's parameter tree (the same operations as
    # `module.apply`: outputs tested equal bit for bit, gradients up to rounding, see `dense`):
    # flax's `apply` re-derives every parameter's shape from its initializer on each call,
    # which made tracing a training step slow.
    def policy_out(params, h):
        return policy_head_apply(params["policy_head"], h, head, dense)

    value_layers = len(config.value_head_hidden) if config.shared else 0

    def value_out(params, h):
        if detach:
            h = jax.lax.stop_gradient(h)
        if value_layers:
            h = mlp_apply(params["value_trunk"], h, value_layers, act, dense)
        return _bounded(dense_apply(params["value_head"], h, dense)[..., 0], config.value_bound)

    def init(key, obs):
        return module.init(key, flatten(obs))["params"]

    def policy(params, obs):
        h = mlp_apply(params.get(actor_trunk, {}), flatten(obs), actor_layers, act, dense)
        return to_dist(policy_out(params, h))

    def value_of(params, x):
        h = mlp_apply(params.get(critic_trunk, {}), x, critic_layers, act, dense)
        return value_out(params, h)

    def value(params, obs):
        return value_of(params, flatten(obs))

    def policy_and_value(params, obs):
        x = flatten(obs)
        h = mlp_apply(params.get(actor_trunk, {}), x, actor_layers, act, dense)
        out = policy_out(params, h)  # before the value, as in the module (same gradient sums)
        v = value_out(params, h) if config.shared else value_of(params, x)
        return to_dist(out), v

    return ActorCritic(init, policy, value, policy_and_value)
