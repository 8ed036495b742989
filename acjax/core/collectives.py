"""Collectives for one optional mapped axis: identities without it.

An algorithm's pure functions (`make_train(config, axis_name=...)`) see at most one *data axis*:
a name over which the global batch of environments is split (data parallelism, see
`acjax.run.parallel`). They never learn how many devices or agents there are; they call these,
which are identities when `axis_name` is None:

* `shard_keys(key, n, axis_name)`: this shard's PRNG keys of a global batch of `n` elements.
  Keys depend on the element's global index only, so a run draws the same random numbers
  whether its environments live on 1 device or 8.
* `mean`, `total`, `batch_moments`: averages and sums over the whole global batch.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp

AxisName = str | None

__all__ = ["AxisName", "batch_moments", "local_size", "mean", "shard_count", "shard_keys",
           "total"]




def shard_count(axis_name: AxisName) -> int:
    """Number of shards along `axis_name` (a trace-time constant; 1 without an axis)."""
    return 1 if axis_name is None else int(jax.lax.psum(1, axis_name))


def local_size(global_size: int, axis_name: AxisName) -> int:
    """Elements of a global batch of `global_size` held by each shard."""
    count = shard_count(axis_name)
    if global_size % count:
        raise ValueError(
            f"num_envs={global_size} cannot be split evenly over {count} devices; choose a "
            f"multiple of {count} or pass --num-devices with a divisor of {global_size}"
        )
    return global_size // count


def shard_keys(key: chex.PRNGKey, global_size: int, axis_name: AxisName) -> jax.Array:
    """Per-element keys `[global_size / shards, 2]` of this shard's slice of a global batch.

    Element `i` of the global batch gets `fold_in(key, i)` wherever it lives.
    """
    size = local_size(global_size, axis_name)
    start = 0 if axis_name is None else jax.lax.axis_index(axis_name) * size
    index = start + jnp.arange(size, dtype=jnp.uint32)
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, index)


def mean(tree: Any, axis_name: AxisName) -> Any:
    """Mean over the shards (each shard's value is the mean of an equal-sized slice)."""
    return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


def total(tree: Any, axis_name: AxisName) -> Any:
    """Sum over the shards."""
    return tree if axis_name is None else jax.lax.psum(tree, axis_name)


def batch_moments(x: jax.Array, axis_name: AxisName) -> tuple[jax.Array, jax.Array]:
    """Mean and population variance over axis 0 of a global batch split along `axis_name`.

    Every shard holds the same number of rows, so the global moments are means of shard means.
    """
    mu = mean(jnp.mean(x, axis=0), axis_name)
    return mu, mean(jnp.mean(jnp.square(x - mu[None]), axis=0), axis_name)
