"""Tests for `acjax.replay` (`acjax.core.replay`)."""

import collections
import doctest
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acjax.core import replay  # the module whose docstring holds the example
from acjax.replay import ReplayBuffer, ReplayState, make_replay_buffer

# One sample size throughout: each new shape compiles jax.random's sampler anew.
N = 4096


def _item(obs_dim=2):
    return {
        "obs": jnp.zeros((obs_dim,), jnp.float32),
        "action": jnp.zeros((), jnp.int32),
        "terminated": jnp.zeros((), jnp.bool_),
    }


def _batch(ids, obs_dim=2):
    """Items whose every field encodes its id, so that contents can be read back."""
    ids = np.asarray(ids, np.int32)
    return {
        "obs": jnp.asarray(np.stack([ids + 0.5 * j for j in range(obs_dim)], -1), jnp.float32),
        "action": jnp.asarray(ids),
        "terminated": jnp.asarray(ids % 2 == 1),
    }


def _ordered_ids(state: ReplayState, capacity: int) -> list[int]:
    """The valid item ids from oldest to newest."""
    size, index = int(state.size), int(state.index)
    slots = range(size) if size < capacity else [(index + i) % capacity for i in range(capacity)]
    action = np.asarray(state.data["action"])
    return [int(action[s]) for s in slots]


def test_fifo_order_matches_deque_over_wraparound():
    capacity = 7
    buffer = make_replay_buffer(capacity)
    add = jax.jit(buffer.add)
    state = buffer.init(_item())
    reference = collections.deque(maxlen=capacity)
    rng = np.random.default_rng(0)
    next_id = 1
    for _ in range(30):  # ~100 items: the buffer wraps around many times
        batch = int(rng.integers(1, capacity + 1))
        ids = list(range(next_id, next_id + batch))
        next_id += batch
        state = add(state, _batch(ids))
        reference.extend(ids)
        assert _ordered_ids(state, capacity) == list(reference)
        assert int(state.size) == len(reference)
        assert int(state.index) == (next_id - 1) % capacity
        # Every field of a slot belongs to the same item.
        action = np.asarray(state.data["action"])[: int(state.size)]
        np.testing.assert_array_equal(np.asarray(state.data["obs"])[: int(state.size), 1],
                                      action + 0.5)
        np.testing.assert_array_equal(np.asarray(state.data["terminated"])[: int(state.size)],
                                      action % 2 == 1)
    assert next_id > 3 * capacity
    assert state.index.dtype == jnp.int32 and state.size.dtype == jnp.int32


def test_batch_of_exactly_capacity_replaces_everything():
    buffer = make_replay_buffer(4)
    state = buffer.add(buffer.init(_item()), _batch([1, 2, 3]))
    state = buffer.add(state, _batch([4, 5, 6, 7]))
    # Slots 3, 0, 1, 2 get 4, 5, 6, 7; index returns to 3.
    np.testing.assert_array_equal(state.data["action"], [5, 6, 7, 4])
    assert int(state.index) == 3 and int(state.size) == 4
    assert _ordered_ids(state, 4) == [4, 5, 6, 7]


def test_sample_only_valid_items_before_full():
    buffer = make_replay_buffer(100)
    state = buffer.add(buffer.init(_item()), _batch(np.arange(1, 11)))
    sample = buffer.sample(state, jax.random.PRNGKey(0), N)
    ids = np.asarray(sample["action"])
    assert ids.shape == (N,)
    assert set(ids.tolist()) == set(range(1, 11))  # never an empty slot (id 0), every valid one
    # Fields stay together.
    np.testing.assert_array_equal(np.asarray(sample["obs"])[:, 0], ids)
    assert sample["obs"].shape == (N, 2)


def test_sample_is_roughly_uniform():
    capacity, n = 10, N
    buffer = make_replay_buffer(capacity)
    state = buffer.add(buffer.init(_item()), _batch(np.arange(8)))
    state = buffer.add(state, _batch(np.arange(8, 15)))  # wrapped: ids 5..14
    ids = np.asarray(buffer.sample(state, jax.random.PRNGKey(1), n)["action"])
    freqs = np.bincount(ids - 5, minlength=capacity) / n
    assert freqs.shape == (capacity,) and ids.min() >= 5 and ids.max() <= 14
    # Standard error of each frequency: sqrt(0.09 / n) = 0.0047; allow ~4 of them.
    np.testing.assert_allclose(freqs, np.full(capacity, 0.1), atol=0.02)


def test_sample_differs_across_keys_and_repeats_for_one_key():
    buffer = make_replay_buffer(50)
    state = buffer.add(buffer.init(_item()), _batch(np.arange(50)))
    a = buffer.sample(state, jax.random.PRNGKey(0), N)["action"]
    b = buffer.sample(state, jax.random.PRNGKey(0), N)["action"]
    c = buffer.sample(state, jax.random.PRNGKey(1), N)["action"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_empty_buffer_samples_init_zeros():
    buffer = make_replay_buffer(8)
    state = buffer.init(_item())
    sample = buffer.sample(state, jax.random.PRNGKey(0), N)
    assert int(state.size) == 0
    np.testing.assert_array_equal(sample["obs"], np.zeros((N, 2)))
    np.testing.assert_array_equal(sample["action"], np.zeros(N))


def test_jit_and_vmap_over_two_buffers_match_separate_buffers():
    capacity = 6
    buffer = make_replay_buffer(capacity)
    items = jax.tree_util.tree_map(lambda *x: jnp.stack(x), _item(), _item())
    states = jax.jit(jax.vmap(buffer.init))(items)
    assert states.data["obs"].shape == (2, capacity, 2) and states.index.shape == (2,)
    batches = [(_batch([1, 2, 3, 4]), _batch([-1, -2, -3, -4])),
               (_batch([5, 6, 7, 8]), _batch([-5, -6, -7, -8]))]
    add = jax.jit(jax.vmap(buffer.add))
    singles = [buffer.init(_item()), buffer.init(_item())]
    for first, second in batches:
        states = add(states, jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]),
                                                    first, second))
        singles = [buffer.add(singles[0], first), buffer.add(singles[1], second)]
    for i in range(2):
        for x, y in zip(jax.tree_util.tree_leaves(states), jax.tree_util.tree_leaves(singles[i])):
            np.testing.assert_array_equal(x[i], y)
    assert _ordered_ids(jax.tree_util.tree_map(lambda x: x[1], states), capacity) == [
        -3, -4, -5, -6, -7, -8]

    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    sample = jax.jit(jax.vmap(lambda s, k: buffer.sample(s, k, 64)))(states, keys)
    ids = np.asarray(sample["action"])
    assert ids.shape == (2, 64)
    assert set(ids[0].tolist()) <= set(range(3, 9)) and set(ids[1].tolist()) <= set(
        range(-8, -2))
    assert len(set(ids[0].tolist())) == 6  # each buffer samples all of its own items


def test_vmap_buffers_with_different_sizes_sample_only_their_valid_items():
    buffer = make_replay_buffer(10)
    states = jax.vmap(buffer.init)(jax.tree_util.tree_map(lambda x: jnp.stack([x, x]), _item()))
    # Give buffer 0 two items and buffer 1 ten, by masking a full state per buffer.
    full = jax.vmap(buffer.add)(states, jax.tree_util.tree_map(
        lambda x: jnp.stack([x, x]), _batch(np.arange(1, 11))))
    states = full._replace(size=jnp.array([2, 10], jnp.int32), index=jnp.array([2, 0], jnp.int32))
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    ids = np.asarray(jax.vmap(lambda s, k: buffer.sample(s, k, 64))(states, keys)["action"])
    assert set(ids[0].tolist()) == {1, 2}
    assert set(ids[1].tolist()) == set(range(1, 11))


def test_dtypes_preserved_and_items_cast_to_storage_dtype():
    item = {
        "f32": jnp.zeros((3,), jnp.float32),
        "i32": jnp.zeros((), jnp.int32),
        "u8": jnp.zeros((2, 2), jnp.uint8),
        "b": jnp.zeros((), jnp.bool_),
        "f16": jnp.zeros((), jnp.float16),
    }
    buffer = make_replay_buffer(5)
    state = buffer.init(item)
    for k, v in item.items():
        assert state.data[k].dtype == v.dtype and state.data[k].shape == (5,) + v.shape
    batch = {
        "f32": jnp.ones((2, 3), jnp.float32),
        "i32": jnp.array([7, 8], jnp.int32),
        "u8": jnp.full((2, 2, 2), 255, jnp.uint8),
        "b": jnp.array([True, False]),
        "f16": jnp.array([1.5, 2.5], jnp.float32),  # cast to the stored float16
    }
    state = jax.jit(buffer.add)(state, batch)
    sample = buffer.sample(state, jax.random.PRNGKey(0), N)
    for k, v in item.items():
        assert state.data[k].dtype == v.dtype
        assert sample[k].dtype == v.dtype and sample[k].shape == (N,) + v.shape
    np.testing.assert_array_equal(state.data["u8"][:2], np.full((2, 2, 2), 255))
    np.testing.assert_array_equal(state.data["f16"][:2], [1.5, 2.5])


def test_namedtuple_items():
    class T(NamedTuple):
        obs: jax.Array
        reward: jax.Array

    buffer = make_replay_buffer(3)
    state = buffer.init(T(jnp.zeros(4), jnp.zeros(())))
    state = buffer.add(state, T(jnp.ones((2, 4)), jnp.array([1.0, 2.0])))
    sample = buffer.sample(state, jax.random.PRNGKey(0), N)
    assert isinstance(sample, T) and sample.obs.shape == (N, 4)
    assert set(np.asarray(sample.reward).tolist()) <= {1.0, 2.0}


@pytest.mark.parametrize("capacity", [0, -3, 2.5, True, "10", None])
def test_bad_capacity_raises(capacity):
    with pytest.raises(ValueError, match="capacity"):
        make_replay_buffer(capacity)


def test_batch_larger_than_capacity_raises_at_trace_time():
    buffer = make_replay_buffer(3)
    state = buffer.init(_item())
    with pytest.raises(ValueError, match=r"4 items.*capacity 3"):
        jax.jit(buffer.add)(state, _batch([1, 2, 3, 4]))


def test_bad_items_and_batch_size_raise():
    buffer = make_replay_buffer(3)
    state = buffer.init(_item())
    with pytest.raises(ValueError, match=r"\['obs'\].*batch axis"):
        buffer.add(state, {**_batch([1]), "obs": jnp.zeros((2,))})  # one item without batch axis
    with pytest.raises(ValueError, match="different batch sizes"):
        buffer.add(state, {**_batch([1]), "action": jnp.zeros((2,), jnp.int32)})
    with pytest.raises(ValueError, match="structure"):
        buffer.add(state, {"obs": jnp.zeros((1, 2))})
    with pytest.raises(ValueError, match="batch_size"):
        buffer.sample(state, jax.random.PRNGKey(0), 0)
    with pytest.raises(ValueError, match="example_item"):
        buffer.init({})


def test_replay_buffer_fields_and_docstring_example():
    buffer = make_replay_buffer(4)
    assert isinstance(buffer, ReplayBuffer) and buffer.capacity == 4
    results = doctest.testmod(replay, extraglobs={"jax": jax, "jnp": jnp}, verbose=False)
    assert results.attempted > 0 and results.failed == 0
