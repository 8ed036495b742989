"""Actor-critic networks (flax linen) and the pure functions the trainers call.

Two designs:

* separate actor and critic MLPs (the default): parameters `actor_trunk`, `policy_head`,
  `critic_trunk`, `value_head`;
* a shared trunk with a policy head and a value head (`shared=True`: `trunk`, `policy_head`,
  `value_head`); with
  `detach_critic=True` the value head sees the trunk's features through `stop_gradient`, so the
  critic's loss does not shape the shared representation (the "detached critic").

Discrete action spaces get a categorical head over logits; continuous ones a diagonal Gaussian
whose log-std is a free parameter (state-independent) or a second head (state-dependent).
Hidden layers use orthogonal init with gain sqrt(2), the policy head gain 0.01 and the value
head gain 1, as in the PPO reference implementation.

Off-policy actor-critics (SAC, TD3, DDPG) use the networks at the end of this module
(`OffPolicyNetworkConfig`): an ensemble of K Q-networks `Q(s, a)` whose parameters are stacked
along a leading axis and evaluated with one `vmap` over that axis (K = 2: the twin critics of
TD3 and SAC), a deterministic actor `tanh(f(s))` and a tanh-squashed Gaussian actor. Their
actions live in [-1, 1]; the trainer rescales them to the environment's bounds. They use the
fan-in uniform initialisation of the reference implementations (PyTorch's default).

Observations of any shape are flattened over their trailing `len(obs_shape)` axes, so the same
functions take `[*obs_shape]`, `[B, *obs_shape]` or `[T, B, *obs_shape]`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from acjax.distributions import Categorical, DiagGaussian, TanhGaussian
from acjax.envs import EnvSpec

Activation = Literal["tanh", "relu", "gelu", "silu", "elu"]
LogStdMode = Literal["state_independent", "state_dependent"]
Params = Any
Distribution = Categorical | DiagGaussian

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": nn.tanh,
    "relu": nn.relu,
    "gelu": nn.gelu,
    "silu": nn.silu,
    "elu": nn.elu,
}
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
    """Continuous actions only: initial log standard deviation (default 0)."""

    def validate(self, spec: EnvSpec, prefix: str = "network") -> None:
        """Raises `ValueError` naming the field, its value and the fix."""
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


def _dense(features: int, gain: float, bias: float = 0.0) -> nn.Dense:
    return nn.Dense(
        features,
        kernel_init=nn.initializers.orthogonal(gain),
        bias_init=nn.initializers.constant(bias),
    )


@jax.custom_vjp
def dense(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """`x @ kernel + bias` over the last axis: `x[..., in]`, `kernel[in, out]`, `bias[out]`.

    The same operations as `nn.Dense.__call__`, with a hand-written gradient (reverse mode
    only; `jax.jvp` through it raises). On CPU, the kernel's gradient `xᵀ g` reads `x`
    transposed in memory: autodiff's form contracts the batch axis of both operands, which
    XLA's CPU backend computes with its own dot emitter instead of the library matmul it
    calls for the other dots (and it folds a plain transpose back into that form, hence the
    optimization barrier). At PPO's 128-sample minibatches of 64x64 networks this makes an
    SGD step about 5% faster. A layer with one output (a value head) keeps autodiff's form,
    a matrix-vector product that needs no transposed copy of `x`. Other backends contract as
    autodiff does.
    """
    y = jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))
    return y + jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))


def _dense_fwd(x, kernel, bias):
    return dense(x, kernel, bias), (x, kernel, bias)


def _dense_bwd(residuals, g):
    x, kernel, bias = residuals
    x2, g2 = x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1])
    if jax.default_backend() == "cpu" and kernel.shape[1] > 1:
        d_kernel = jax.lax.optimization_barrier(x2.T) @ g2
    else:
        d_kernel = jax.lax.dot_general(x2, g2, (((0,), (0,)), ((), ())))
    d_x = jax.lax.dot_general(g, kernel, (((g.ndim - 1,), (1,)), ((), ())))
    d_bias = jnp.sum(g2, axis=0)
    return d_x.astype(x.dtype), d_kernel.astype(kernel.dtype), d_bias.astype(bias.dtype)


dense.defvjp(_dense_fwd, _dense_bwd)


def _dense_apply(params: Params, x: jax.Array) -> jax.Array:
    """`nn.Dense.__call__` on a `{"kernel", "bias"}` tree: `x @ kernel + bias`."""
    return dense(x, params["kernel"], params["bias"])


def _mlp_apply(
    params: Params, x: jax.Array, num_layers: int, act: Callable[[jax.Array], jax.Array]
) -> jax.Array:
    """`MLP.__call__` on its parameter tree (`Dense_0` ... `Dense_{num_layers - 1}`)."""
    for i in range(num_layers):
        x = act(_dense_apply(params[f"Dense_{i}"], x))
    return x


class MLP(nn.Module):
    """Hidden layers only: `[..., in] -> [..., hidden_sizes[-1]]`."""

    hidden_sizes: Sequence[int]
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = _ACTIVATIONS[self.activation]
        for width in self.hidden_sizes:
            x = act(_dense(width, math.sqrt(2.0))(x))
        return x


class PolicyHead(nn.Module):
    """Features -> distribution parameters: logits `[..., n]` or `(mean, log_std)`."""

    discrete: bool
    num_actions: int
    log_std: str = "state_independent"
    init_log_std: float = 0.0

    @nn.compact
    def __call__(self, h: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        out = _dense(self.num_actions, 0.01)(h)
        if self.discrete:
            return out, None
        if self.log_std == "state_dependent":
            log_std = _dense(self.num_actions, 0.01, self.init_log_std)(h)
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


class SeparateActorCritic(nn.Module):
    """Two MLPs; `__call__` returns `(dist_params, value)`."""

    actor_hidden: Sequence[int]
    critic_hidden: Sequence[int]
    activation: str
    head: HeadSpec

    def setup(self):
        self.actor_trunk = MLP(self.actor_hidden, self.activation)
        self.policy_head = PolicyHead(*self.head)
        self.critic_trunk = MLP(self.critic_hidden, self.activation)
        self.value_head = _dense(1, 1.0)

    def policy(self, x):
        return self.policy_head(self.actor_trunk(x))

    def value(self, x):
        return self.value_head(self.critic_trunk(x))[..., 0]

    def __call__(self, x):
        return self.policy(x), self.value(x)


class SharedActorCritic(nn.Module):
    """One trunk, two heads; `detach_critic` stops the value gradient at the trunk."""

    hidden: Sequence[int]
    activation: str
    head: HeadSpec
    detach_critic: bool = False

    def setup(self):
        self.trunk = MLP(self.hidden, self.activation)
        self.policy_head = PolicyHead(*self.head)
        self.value_head = _dense(1, 1.0)

    def _value_from(self, h):
        if self.detach_critic:
            h = jax.lax.stop_gradient(h)
        return self.value_head(h)[..., 0]

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


def make_actor_critic(spec: EnvSpec, config: NetworkConfig = NetworkConfig()) -> ActorCritic:
    """Builds the actor-critic for an environment's observation and action spaces."""
    head = HeadSpec(
        discrete=spec.discrete,
        num_actions=spec.num_actions,
        log_std=config.log_std or "state_independent",
        init_log_std=0.0 if config.init_log_std is None else float(config.init_log_std),
    )
    if config.shared:
        module = SharedActorCritic(
            tuple(config.hidden_sizes), config.activation, head, config.detach_critic
        )
    else:
        module = SeparateActorCritic(
            tuple(config.hidden_sizes),
            tuple(config.critic_hidden_sizes or config.hidden_sizes),
            config.activation,
            head,
        )
    obs_ndim = len(spec.obs_shape)

    def flatten(obs: jax.Array) -> jax.Array:
        obs = obs.astype(jnp.float32)
        return obs.reshape(obs.shape[: obs.ndim - obs_ndim] + (-1,))

    def to_dist(out) -> Distribution:
        loc, log_std = out
        return Categorical(loc) if spec.discrete else DiagGaussian(loc, log_std)

    act = _ACTIVATIONS[config.activation]
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
        out = _dense_apply(params["policy_head"]["Dense_0"], h)
        if head.discrete:
            return out, None
        if head.log_std == "state_dependent":
            log_std = _dense_apply(params["policy_head"]["Dense_1"], h)
        else:
            log_std = jnp.broadcast_to(params["policy_head"]["log_std"], out.shape)
        return out, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)

    def value_out(params, h):
        if detach:
            h = jax.lax.stop_gradient(h)
        return _dense_apply(params["value_head"], h)[..., 0]

    def init(key, obs):
        return module.init(key, flatten(obs))["params"]

    def policy(params, obs):
        h = _mlp_apply(params.get(actor_trunk, {}), flatten(obs), actor_layers, act)
        return to_dist(policy_out(params, h))

    def value_of(params, x):
        h = _mlp_apply(params.get(critic_trunk, {}), x, critic_layers, act)
        return value_out(params, h)

    def value(params, obs):
        return value_of(params, flatten(obs))

    def policy_and_value(params, obs):
        x = flatten(obs)
        h = _mlp_apply(params.get(actor_trunk, {}), x, actor_layers, act)
        out = policy_out(params, h)  # before the value, as in the module (same gradient sums)
        v = value_out(params, h) if config.shared else value_of(params, x)
        return to_dist(out), v

    return ActorCritic(init, policy, value, policy_and_value)


# ----------------------------------------------------------------------------------------------
# Off-policy networks: Q-ensembles, deterministic and squashed-Gaussian actors
# ----------------------------------------------------------------------------------------------

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
        if self.activation not in _ACTIVATIONS:
            raise ValueError(
                f"{prefix}.activation={self.activation!r} is not one of "
                f"{', '.join(repr(a) for a in _ACTIVATIONS)}"
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
        act = _ACTIVATIONS[self.activation]
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
