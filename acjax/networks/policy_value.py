"""AlphaZero's policy-value network: f(s) = (p, v), an MLP trunk with two heads.

`make_policy_value(obs_shape, num_actions, hidden_sizes, bounded=True)` returns
`PolicyValue(init, apply)`: `apply(params, obs[B, *obs_shape]) -> (logits[B, A], value[B])`,
the observation flattened first (pgx's boolean planes become 0/1 floats). With `bounded` the
value head ends in tanh (a game's outcome lies in [-1, 1]); without it the value is linear (a
single-player return).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["PolicyValue", "make_policy_value"]


class _PolicyValueMLP(nn.Module):
    hidden_sizes: tuple[int, ...]
    num_actions: int
    bounded: bool

    @nn.compact
    def __call__(self, obs):
        x = obs.reshape(obs.shape[0], -1).astype(jnp.float32)
        for width in self.hidden_sizes:
            x = nn.relu(nn.Dense(width)(x))
        logits = nn.Dense(self.num_actions, kernel_init=nn.initializers.zeros)(x)
        value = nn.Dense(1, kernel_init=nn.initializers.zeros)(x)[:, 0]
        return logits, jnp.tanh(value) if self.bounded else value


class PolicyValue(NamedTuple):
    """`init(key) -> params` and `apply(params, obs[B, ...]) -> (logits[B, A], value[B])`."""

    init: Callable[[jax.Array], Any]
    apply: Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]]


def make_policy_value(obs_shape: tuple[int, ...], num_actions: int,
                      hidden_sizes: tuple[int, ...] = (128, 128), *,
                      bounded: bool = True) -> PolicyValue:
    """The policy-value MLP for observations of `obs_shape` and `num_actions` actions."""
    module = _PolicyValueMLP(tuple(int(h) for h in hidden_sizes), int(num_actions), bounded)

    def init(key):
        return module.init(key, jnp.zeros((1, *obs_shape), jnp.float32))

    return PolicyValue(init, module.apply)
