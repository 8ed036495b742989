"""The actor-learner's pieces: V-trace on-policy, the lag-0 run against synchronous A2C, the
queue's bookkeeping, the policy-lag bound, A3C's gradients and the configuration's checks."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acjax.agents.impala import loop
from acjax.agents.impala.config import ImpalaConfig
from acjax.agents.impala.learner import impala_loss, merge_trajectories
from acjax.agents.impala.learner import make_learner as _make_learner
from acjax.agents.impala.runtime import ActorError, ActorLearner
from acjax.agents.rollout import successor_values
from acjax.core import losses, returns
from acjax.networks import NetworkConfig

# One learner per configuration: its jitted functions then compile once for the module.
make_learner = functools.lru_cache(_make_learner)

SMALL = ImpalaConfig(env="CartPole-v1", num_actors=1, num_envs=4, num_steps=8, batch_size=1,
                     queue_size=1, total_timesteps=4 * 8 * 40, learning_rate=1e-3,
                     network=NetworkConfig(hidden_sizes=(16, 16)))


def _python_n_step(rewards, next_values, terminated, truncated, gamma):
    """The bootstrapped returns to the end of each episode or of the trajectory, by loops."""
    t_len, b = rewards.shape
    out = np.zeros((t_len, b))
    for j in range(b):
        for t in range(t_len):
            g, discount, k = 0.0, 1.0, t
            while True:
                g += discount * rewards[k, j]
                if terminated[k, j]:
                    break
                if truncated[k, j] or k == t_len - 1:
                    g += discount * gamma * next_values[k, j]
                    break
                discount *= gamma
                k += 1
            out[t, j] = g
    return out


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), t_len=st.integers(1, 12), b=st.integers(1, 3),
       gamma=st.floats(0.0, 1.0), p_end=st.floats(0.0, 0.5))
def test_vtrace_on_policy_equals_n_step_returns(seed, t_len, b, gamma, p_end):
    """With the behaviour policy the target policy (log rho = 0, lambda = 1), V-trace's targets
    are the n-step returns bootstrapped at the trajectory's end (n = T), its advantages those
    returns minus V (a property of V-trace, IMPALA's section 4.1)."""
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(t_len, b)).astype(np.float32)
    values = rng.normal(size=(t_len, b)).astype(np.float32)
    next_values = rng.normal(size=(t_len, b)).astype(np.float32)
    ends = rng.random((t_len, b)) < p_end
    terminated = ends & (rng.random((t_len, b)) < 0.5)
    truncated = ends & ~terminated
    # The true successor of a step inside an episode is the next step's state.
    next_values[:-1] = np.where(ends[:-1], next_values[:-1], values[1:])
    out = returns.vtrace(rewards, values, next_values, terminated, truncated,
                         np.zeros((t_len, b), np.float32), gamma=gamma)
    n_step = returns.n_step_returns(rewards, next_values, terminated, truncated, gamma=gamma,
                                    n=t_len)
    loops = _python_n_step(rewards, next_values, terminated, truncated, gamma)
    np.testing.assert_allclose(out.targets, n_step, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.targets, loops, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.pg_advantages, loops - values, rtol=1e-5, atol=1e-5)


def _fresh(config):
    """`(learner, device, state)`: the learner of `config` at version 0 on the first device."""
    learner = make_learner(config, config.validate())
    device = jax.devices()[0]
    return learner, device, loop.initial_state(learner, config, device)


def _run_steps(config, num_updates, *, observer=None):
    """`num_updates` learner steps over a fresh ActorLearner; returns (state, results, al)."""
    learner, device, state = _fresh(config)
    initial = jax.device_get(state)
    step = loop.make_step(config, learner, device)
    results = []
    al = ActorLearner(config, learner, state, learner_device=device, actor_devices=[device]
                      * config.num_actors)
    with al:
        version = 0
        for _ in range(num_updates):
            result = step(al, state, version)
            state, version = result.state, version + 1
            results.append(result)
            if observer is not None:
                observer(al, result)
    return initial, state, results, al, learner


def test_single_actor_with_lag_zero_consumes_fresh_trajectories_deterministically():
    """One actor, max_policy_lag=0: every trajectory comes from the parameters of the update
    that consumes it (lag 0), and the run repeats bit for bit."""
    config = dataclasses.replace(SMALL, max_policy_lag=0)
    _, state, results, _, _ = _run_steps(config, 12)
    assert [lag for r in results for lag in r.lags] == [0] * 12
    _, state2, _, _, _ = _run_steps(config, 12)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(state2.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_lag_zero_updates_are_a2c_steps_on_the_consumed_trajectories():
    config = dataclasses.replace(SMALL, max_policy_lag=0)
    """Lag 0: the learner's parameters equal synchronous A2C steps (a2c_loss with V-trace's
    on-policy advantages and targets, the same optimizer) on the trajectories it consumed."""
    consumed = []
    learner, device, state = _fresh(config)
    params = jax.device_get(state.params)
    opt_state = learner.optimizer.init(params)
    step = loop.make_step(config, learner, device)
    al = ActorLearner(config, learner, state, learner_device=device, actor_devices=[device])
    original_next = al.next_items

    def recording_next(n):
        items = original_next(n)
        consumed.extend(jax.device_get(items))
        return items

    al.next_items = recording_next
    with al:
        for version in range(10):
            state = step(al, state, version).state
    network = learner.network

    def a2c_loss(params, traj):
        dist, values = network.policy_and_value(params, traj.obs)
        done = jnp.logical_or(traj.terminated, traj.truncated)
        next_values = successor_values(network, params, jax.lax.stop_gradient(values),
                                       traj.next_obs, done)
        vt = returns.vtrace(traj.reward, jax.lax.stop_gradient(values),
                            jax.lax.stop_gradient(next_values), traj.terminated,
                            traj.truncated, jnp.zeros_like(values), gamma=config.gamma)
        return losses.a2c_loss(log_probs=dist.log_prob(traj.action),
                               advantages=vt.pg_advantages, values=values, targets=vt.targets,
                               entropies=dist.entropy(), value_coef=config.vf_coef,
                               entropy_coef=config.ent_coef)

    @jax.jit
    def a2c_step(params, opt_state, traj):
        grads, _ = jax.grad(a2c_loss, has_aux=True)(params, traj)
        updates, opt_state = learner.optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    assert [int(t.version) for t in consumed] == list(range(10))
    for traj in consumed:
        params, opt_state = a2c_step(params, opt_state, merge_trajectories((traj,)))
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(state.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=2e-6)


def test_queue_never_loses_or_duplicates_a_trajectory():
    """Three actors, a small queue, 30 updates of two trajectories: every consumed trajectory
    was produced once and consumed once, each actor's arrive in order with no gap, and what
    was produced but not consumed fits in the queue and the actors' hands."""
    config = dataclasses.replace(SMALL, num_actors=3, batch_size=2, queue_size=3,
                                 total_timesteps=SMALL.trajectory_steps * 2 * 30)
    _, _, results, al, _ = _run_steps(config, 30)
    assert sum(al.consumed.values()) == 60
    assert set(al.consumed.values()) == {1}
    assert set(al.produced.values()) == {1}
    assert set(al.consumed) <= set(al.produced)
    for actor in range(3):
        indices = sorted(i for a, i in al.consumed if a == actor)
        assert indices == list(range(len(indices)))
    leftover = set(al.produced) - set(al.consumed)
    assert len(leftover) <= config.queue_size + config.num_actors
    assert sum(r.env_steps for r in results) == 60 * config.trajectory_steps


def test_max_policy_lag_bounds_the_lag_of_every_consumed_trajectory():
    config = dataclasses.replace(SMALL, num_actors=1, queue_size=4, max_policy_lag=2)
    _, _, results, _, _ = _run_steps(config, 25)
    lags = [lag for r in results for lag in r.lags]
    assert max(lags) <= 2
    unbounded = dataclasses.replace(config, max_policy_lag=None)
    _, _, results, _, _ = _run_steps(unbounded, 25)
    assert max(lag for r in results for lag in r.lags) >= 2


def test_a3c_applies_actor_gradients_computed_with_their_parameters():
    """A3C: each item is the gradient of the uncorrected loss with the parameters of the
    version that produced it; applying it is one optimizer step."""
    config = dataclasses.replace(SMALL, mode="a3c", max_policy_lag=0)
    learner, device, state = _fresh(config)
    with ActorLearner(config, learner, state, learner_device=device,
                      actor_devices=[device]) as al:
        (item,) = al.next_items(1)
        assert item.version == 0
        assert set(item.metrics) >= {"pg_loss", "value_loss", "grad_norm", "episode_count"}
        new_state, metrics = learner.apply_gradients(state, item.grads)
        assert int(new_state.version) == 1
        np.testing.assert_allclose(metrics["grad_norm"], item.metrics["grad_norm"], rtol=1e-6)


def test_uncorrected_loss_equals_the_corrected_one_on_policy():
    """On data from the learner's own parameters the importance weights are 1 (up to float
    error), so IMPALA's and A3C's losses agree."""
    config = SMALL
    learner, device, state = _fresh(config)
    with ActorLearner(config, learner, state, learner_device=device,
                      actor_devices=[device]) as al:
        (traj,) = al.next_items(1)
    corrected, m1 = impala_loss(config, learner.network, state.params,
                                merge_trajectories((traj,)))
    plain, _ = impala_loss(config, learner.network, state.params, merge_trajectories((traj,)),
                           correct_lag=False)
    np.testing.assert_allclose(corrected, plain, rtol=1e-5)
    np.testing.assert_allclose(m1["rho_mean"], 1.0, atol=1e-5)


def test_an_actor_that_raises_stops_the_learner_with_its_error():
    config = SMALL
    learner, device, state = _fresh(config)
    broken = learner._replace(act=lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    with ActorLearner(config, broken, state, learner_device=device,
                      actor_devices=[device]) as al, pytest.raises(ActorError, match="actor 0 "
                                                                   "stopped: RuntimeError: boom"):
        al.next_items(1)


def test_silent_actors_raise_after_the_timeout():
    config = dataclasses.replace(SMALL, timeout=0.5, max_policy_lag=0)
    learner, device, state = _fresh(config)
    with ActorLearner(config, learner, state, learner_device=device,
                      actor_devices=[device]) as al:
        al.next_items(1, timeout=120)  # the first one waits for the compiles
        # Lag 0 and nothing published: the actor waits, so nothing more arrives.
        with pytest.raises(ActorError, match="no trajectory from any of the 1 actors within "
                                             "0.5 s"):
            al.next_items(1)


@pytest.mark.parametrize(("field", "value", "match"), [
    ("mode", "sync", "mode='sync' is not one of 'impala', 'a3c'"),
    ("num_actors", 0, "num_actors=0 must be a positive integer; pass e.g. --num-actors 2"),
    ("batch_size", 5, "batch_size=5 exceeds queue_size=4"),
    ("max_policy_lag", -1, "max_policy_lag=-1 must be >= 0"),
    ("async_envs", True, "async_envs=True steps gymnasium environments"),
    ("timeout", 0.0, "timeout=0.0 must be a positive number"),
    ("clip_rho_threshold", 0.0, "clip_rho_threshold=0.0 must be a positive number"),
    ("vtrace_lambda", 1.5, "vtrace_lambda=1.5 must lie in"),
    ("total_timesteps", 10, "total_timesteps=10 is smaller than one update"),
    ("env", "CartPol-v1", "CartPole-v1"),
    ("env", "gymnasium:CartPol-v1", "CartPole-v1"),
])
def test_bad_settings_raise_naming_the_field(field, value, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace("[", r"\[")):
        dataclasses.replace(ImpalaConfig(), **{field: value}).validate()


def test_a3c_takes_one_trajectory_per_update():
    with pytest.raises(ValueError, match="batch_size=2: mode='a3c' applies each actor's"):
        ImpalaConfig(mode="a3c", batch_size=2).validate()
