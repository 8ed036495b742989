"""The linear-Gaussian actor and quadratic critic of the 1-D regulator ("Regulator1D-v0").

For a scalar observation s and a scalar action:

  actor:   π(a | s) = N(a; θ₁ s, exp(θ₂)),     log σ = θ₂ / 2   (θ₂ the log-variance),
  critic:  V(s) = φ₁ s + φ₂ s².

The optimal regulator (`acjax.envs.regulator`) lies inside this family: its mean action is
a = θ₁* s with θ₁* = -k from `acjax.envs.optimal_gain`, its variance tends to 0, and its value
is -P s², i.e. φ₁ = 0 and φ₂ = -P (a stochastic policy's value differs from a quadratic by a
state-independent constant, σ² (c + γ P) / (1 - γ), which this critic has no term for). Four
scalars, so a learner can be watched parameter by parameter.

The parameters are one small pytree of float32 scalars:
`{"actor": {"theta1": [], "log_var": []}, "critic": {"phi1": [], "phi2": []}}`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from acjax.core.distributions import DiagGaussian
from acjax.envs import EnvSpec
from acjax.networks.layers import Dense, Params

__all__ = ["make_linear_quadratic"]

# `acjax.networks.actor_critic` builds these networks for `architecture="linear_quadratic"`, so
# this module does not import it back (that would close an import loop): its log-std bounds and
# its `ActorCritic` fields are repeated here, and tests/networks/test_regulator_networks.py
# checks that they stay equal.
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


class LinearQuadratic(NamedTuple):
    """Pure functions over the parameter pytree, field for field an `ActorCritic`.

    Attributes:
      init: `(key, obs[1]) -> params`.
      policy: `(params, obs[..., 1]) -> DiagGaussian` with batch shape `[...]`.
      value: `(params, obs[..., 1]) -> [...]` float32.
      policy_and_value: both at once.
    """

    init: Callable[[chex.PRNGKey, jax.Array], Params]
    policy: Callable[[Params, jax.Array], DiagGaussian]
    value: Callable[[Params, jax.Array], jax.Array]
    policy_and_value: Callable[[Params, jax.Array], tuple[DiagGaussian, jax.Array]]


def _check_spec(spec: EnvSpec) -> None:
    if spec.obs_shape != (1,) or spec.discrete or spec.num_actions != 1:
        raise ValueError(
            f"make_linear_quadratic: env={spec.name!r} has observations of shape "
            f"{spec.obs_shape} and action space {spec.describe_action_space()}; the "
            "linear-Gaussian actor and quadratic critic need one scalar observation and one "
            "continuous action (shapes (1,) and Box (1,)), as 'Regulator1D-v0' has; use the MLP "
            "networks for this environment (--network.architecture mlp, make_actor_critic)"
        )


def make_linear_quadratic(
    spec: EnvSpec, *, dense: Dense | None = None, init_log_var: float = 0.0
) -> LinearQuadratic:
    """Builds the linear-Gaussian actor and quadratic critic for a 1-D observation and action.

      mean μ(s) = θ₁ s,   log σ = clip(θ₂ / 2, LOG_STD_MIN, LOG_STD_MAX),   V(s) = φ₁ s + φ₂ s².

    Args:
      spec: the environment's `EnvSpec`; observations `(1,)` and a continuous action of
        dimension 1 (e.g. "Regulator1D-v0"), otherwise `ValueError`.
      dense: accepted so that every network builder takes the same arguments; unused (the maps
        here are products of scalars, with no dense layer).
      init_log_var: θ₂ at initialisation, the log-variance of the initial policy (0: σ = 1).

    Returns:
      A `LinearQuadratic` (the fields and calling conventions of `ActorCritic`): `init(key, obs[1]) -> params` (θ₁ = 0, θ₂ = init_log_var, φ = 0, all
      float32 scalars; `key` and `obs` are unused); `policy(params, obs[..., 1])` a
      `DiagGaussian` with mean and log_std `[..., 1]` (batch shape `[...]`);
      `value(params, obs[..., 1]) -> [...]` float32; `policy_and_value` both.
    """
    del dense
    _check_spec(spec)
    init_log_var = float(init_log_var)

    def init(key: jax.Array, obs: jax.Array) -> Params:
        del key, obs
        zero = jnp.zeros((), jnp.float32)
        return {
            "actor": {"theta1": zero, "log_var": jnp.full((), init_log_var, jnp.float32)},
            "critic": {"phi1": zero, "phi2": zero},
        }

    def scalar_obs(fn: str, obs: jax.Array) -> jax.Array:
        if jnp.shape(obs)[-1:] != (1,):
            raise ValueError(
                f"make_linear_quadratic.{fn}: obs has shape {jnp.shape(obs)}; pass observations "
                "of shape [..., 1] (one scalar state per batch element)"
            )
        return jnp.asarray(obs).astype(jnp.float32)

    def policy(params: Params, obs: jax.Array) -> DiagGaussian:
        s = scalar_obs("policy", obs)  # [..., 1]
        actor = params["actor"]
        mean = actor["theta1"] * s
        log_std = jnp.clip(actor["log_var"] / 2.0, LOG_STD_MIN, LOG_STD_MAX)
        return DiagGaussian(mean, jnp.broadcast_to(log_std, mean.shape))

    def value(params: Params, obs: jax.Array) -> jax.Array:
        s = scalar_obs("value", obs)[..., 0]  # [...]
        critic = params["critic"]
        return critic["phi1"] * s + critic["phi2"] * jnp.square(s)

    def policy_and_value(params: Params, obs: jax.Array) -> tuple[DiagGaussian, jax.Array]:
        return policy(params, obs), value(params, obs)

    return LinearQuadratic(init, policy, value, policy_and_value)
