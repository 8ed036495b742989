"""A uniform replay buffer that lives inside the jitted training state.

The buffer is a factory in the style of optax: `make_replay_buffer(capacity)`
returns a `ReplayBuffer` of pure functions, and the buffer's contents are a
`ReplayState` pytree that the caller threads through its own state. Nothing
lives on the host, so `init`, `add` and `sample` may be jitted, scanned and
vmapped (several agents' buffers side by side are one `vmap` over their states).

An item is any pytree of arrays (a transition, say `(obs, action, reward,
terminated, next_obs)`); the buffer stores each leaf as one array with a
leading capacity axis.

  >>> buffer = make_replay_buffer(1000)
  >>> item = {"obs": jnp.zeros(3), "reward": jnp.zeros(())}
  >>> state = buffer.init(item)
  >>> batch = {"obs": jnp.ones((8, 3)), "reward": jnp.ones(8)}
  >>> state = buffer.add(state, batch)            # 8 items written at slots 0..7
  >>> sample = buffer.sample(state, jax.random.PRNGKey(0), 32)
  >>> sample["obs"].shape
  (32, 3)

Writes are circular: once full, each new item replaces the oldest one (first
in, first out). Sampling is uniform over the valid items, with replacement.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "ReplayBuffer",
    "ReplayState",
    "make_replay_buffer",
]


Array = chex.Array
PRNGKey = chex.PRNGKey


class ReplayState(NamedTuple):
    """The contents of a replay buffer.

    Attributes:
      data: a pytree shaped like one item, each leaf an array
        `[capacity, *item_leaf_shape]` of the item leaf's dtype. Slots
        `[0, size)` hold valid items; the rest hold zeros.
      index: `[]` int32, the slot the next item is written to, in `[0, capacity)`.
      size: `[]` int32, the number of valid items, in `[0, capacity]`.
    """

    data: Any
    index: jax.Array
    size: jax.Array


class ReplayBuffer(NamedTuple):
    """The pure functions of a replay buffer of a fixed capacity.

    Attributes:
      init: `init(example_item) -> ReplayState`, an empty buffer for items shaped
        like `example_item` (a pytree of ONE item, without a batch axis).
      add: `add(state, items) -> ReplayState`, writes a batch of items (a pytree
        whose leaves have a leading batch axis `[B, ...]`, B static) circularly.
      sample: `sample(state, key, batch_size) -> items`, `batch_size` items
        (leaves `[batch_size, ...]`) drawn uniformly with replacement from the
        valid ones. See `make_replay_buffer` for an empty buffer.
      capacity: the number of items the buffer holds.
    """

    init: Callable[[Any], ReplayState]
    add: Callable[[ReplayState, Any], ReplayState]
    sample: Callable[[ReplayState, jax.Array, int], Any]
    capacity: int


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def make_replay_buffer(capacity: int) -> ReplayBuffer:
    """Creates a circular (FIFO) replay buffer holding up to `capacity` items.

    `add(state, items)` writes the B items of a batch to the slots
    `(index + arange(B)) % capacity` (one scatter), then advances `index` by B
    modulo `capacity` and sets `size = min(size + B, capacity)`. Items are cast
    to the dtypes of `init`'s example item. A batch larger than the buffer
    (B > capacity) raises a `ValueError` when `add` is traced.

    `sample(state, key, batch_size)` draws slot indices uniformly from
    `[0, size)`, with replacement. Sampling an EMPTY buffer (size 0) does not
    fail (a jitted function cannot): it returns `batch_size` copies of slot 0,
    which holds the zeros `init` wrote. Sample only after a warm-up has added at
    least one item (`state.size > 0`); trainers check `size` themselves.

    Args:
      capacity: the number of items the buffer holds, a positive Python int.

    Returns:
      A `ReplayBuffer` of pure, jittable and vmappable functions.

    Raises:
      ValueError: if `capacity` is not an integer >= 1.
    """
    if not _is_int(capacity) or capacity < 1:
        raise ValueError(
            f"make_replay_buffer: capacity must be an integer >= 1; got {capacity!r}. "
            "Pass the number of transitions the buffer should hold, e.g. capacity=100_000."
        )
    capacity = int(capacity)

    def init(example_item: Any) -> ReplayState:
        """An empty buffer for items shaped like `example_item` (no batch axis)."""
        leaves = jax.tree_util.tree_leaves(example_item)
        if not leaves:
            raise ValueError(
                "ReplayBuffer.init: example_item has no array leaves; pass one item, e.g. "
                "a NamedTuple or dict of arrays without a batch axis."
            )
        data = jax.tree_util.tree_map(
            lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.result_type(x)), example_item
        )
        return ReplayState(
            data=data, index=jnp.zeros((), jnp.int32), size=jnp.zeros((), jnp.int32)
        )

    def add(state: ReplayState, items: Any) -> ReplayState:
        """Writes a batch of items (leaves `[B, ...]`) circularly; returns the new state."""
        flat_data, data_def = jax.tree_util.tree_flatten_with_path(state.data)
        flat_items, items_def = jax.tree_util.tree_flatten(items)
        if items_def != data_def:
            raise ValueError(
                "ReplayBuffer.add: items do not have the structure of the buffer's items; got "
                f"{items_def}, expected {data_def}. Pass a batch with the same fields as "
                "init's example_item."
            )
        batch_sizes = set()
        for (path, slot), item in zip(flat_data, flat_items):
            name = jax.tree_util.keystr(path) or "items"
            shape = jnp.shape(item)
            if len(shape) != jnp.ndim(slot) or tuple(shape[1:]) != tuple(slot.shape[1:]):
                raise ValueError(
                    f"ReplayBuffer.add: items{name} has shape {shape}, expected "
                    f"[B, {', '.join(map(str, slot.shape[1:]))}] (a leading batch axis B "
                    "before the item's shape). Add a batch axis, e.g. x[None] for one item."
                )
            batch_sizes.add(shape[0])
        if len(batch_sizes) != 1:
            raise ValueError(
                f"ReplayBuffer.add: the leaves of items have different batch sizes "
                f"{sorted(batch_sizes)}; every leaf needs the same leading axis B."
            )
        (batch,) = batch_sizes
        if batch > capacity:
            raise ValueError(
                f"ReplayBuffer.add: a batch of {batch} items does not fit in a buffer of "
                f"capacity {capacity}; use capacity >= {batch} (batch = num_envs x steps "
                "added at once) or add fewer items at a time."
            )
        slots = (state.index + jnp.arange(batch, dtype=jnp.int32)) % capacity
        new_flat = [
            slot.at[slots].set(jnp.asarray(item).astype(slot.dtype), unique_indices=True)
            for (_, slot), item in zip(flat_data, flat_items)
        ]
        return ReplayState(
            data=jax.tree_util.tree_unflatten(data_def, new_flat),
            index=((state.index + batch) % capacity).astype(jnp.int32),
            size=jnp.minimum(state.size + batch, capacity).astype(jnp.int32),
        )

    def sample(state: ReplayState, key: PRNGKey, batch_size: int) -> Any:
        """`batch_size` items drawn uniformly, with replacement, from slots `[0, size)`."""
        if not _is_int(batch_size) or batch_size < 1:
            raise ValueError(
                f"ReplayBuffer.sample: batch_size must be a Python integer >= 1; got "
                f"{batch_size!r}. Pass a static int, e.g. batch_size=256."
            )
        # An empty buffer samples slot 0 (init's zeros); see make_replay_buffer.
        maxval = jnp.maximum(state.size, 1)
        slots = jax.random.randint(key, (batch_size,), 0, maxval, dtype=jnp.int32)
        return jax.tree_util.tree_map(lambda x: x[slots], state.data)

    return ReplayBuffer(init=init, add=add, sample=sample, capacity=capacity)
