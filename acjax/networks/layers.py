"""Layers the networks are built from: activations, the dense layer and plain MLPs.

A dense layer is a function `dense(x, kernel, bias) -> x @ kernel + bias` over the last axis.
The networks take it as an argument (`make_actor_critic(..., dense=...)`): the default here is
the plain expression, whose gradient is autodiff's; a faster form for a backend (acjax's CPU
layer in `acjax.cpu.dense`) can be passed in without the networks knowing about backends.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["ACTIVATIONS", "MLP", "Activation", "Dense", "Params", "dense", "dense_apply",
           "mlp_apply", "orthogonal_dense"]

Activation = Literal["tanh", "relu", "gelu", "silu", "elu"]
Params = Any
Dense = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
"""`(x[..., in], kernel[in, out], bias[out]) -> [..., out]`."""

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": nn.tanh,
    "relu": nn.relu,
    "gelu": nn.gelu,
    "silu": nn.silu,
    "elu": nn.elu,
}


def dense(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """`x @ kernel + bias` over the last axis: `x[..., in]`, `kernel[in, out]`, `bias[out]`.

    The operations of `nn.Dense.__call__`, differentiated by autodiff.
    """
    y = jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))
    return y + jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))


def orthogonal_dense(features: int, gain: float, bias: float = 0.0) -> nn.Dense:
    """A flax `nn.Dense` with orthogonal kernel init of `gain` and a constant bias."""
    return nn.Dense(
        features,
        kernel_init=nn.initializers.orthogonal(gain),
        bias_init=nn.initializers.constant(bias),
    )


def dense_apply(params: Params, x: jax.Array, layer: Dense = dense) -> jax.Array:
    """`nn.Dense.__call__` on a `{"kernel", "bias"}` tree: `x @ kernel + bias`."""
    return layer(x, params["kernel"], params["bias"])


def mlp_apply(
    params: Params, x: jax.Array, num_layers: int, act: Callable[[jax.Array], jax.Array],
    layer: Dense = dense,
) -> jax.Array:
    """`MLP.__call__` on its parameter tree (`Dense_0` ... `Dense_{num_layers - 1}`)."""
    for i in range(num_layers):
        x = act(dense_apply(params[f"Dense_{i}"], x, layer))
    return x


class MLP(nn.Module):
    """Hidden layers only: `[..., in] -> [..., hidden_sizes[-1]]`, orthogonal init (gain
    sqrt(2))."""

    hidden_sizes: Sequence[int]
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for width in self.hidden_sizes:
            x = act(orthogonal_dense(width, math.sqrt(2.0))(x))
        return x
