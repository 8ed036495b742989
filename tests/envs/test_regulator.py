"""The 1-D regulator "Regulator1D-v0": dynamics, rewards, truncation, wrappers and its optimum."""

import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acjax import envs
from acjax.envs import Regulator1D, RegulatorParams, optimal_gain, optimal_value

REPO = pathlib.Path(__file__).resolve().parents[2]
NAME = "Regulator1D-v0"


def _f32(x):
    return np.float32(x)


# ----------------------------------------------------------------------------------------------
# Construction, names and spaces
# ----------------------------------------------------------------------------------------------


def test_make_env_wraps_like_a_gymnax_box_env_and_env_spec_reads_it():
    env, params = envs.make_env(NAME)
    assert isinstance(env, envs.EpisodeStatistics)
    assert isinstance(env._env, envs.ClipAction) and isinstance(env._env._env, Regulator1D)
    assert params == RegulatorParams()
    assert env.name == NAME and env.num_actions == 1
    spec = envs.env_spec(env, params, NAME)
    assert spec == envs.EnvSpec(NAME, (1,), False, 1, (-10.0,), (10.0,), 20)
    obs_space = env.observation_space(params)
    assert obs_space.shape == (1,) and float(obs_space.low) == -5.0
    # Constructor arguments are RegulatorParams fields.
    env2, params2 = envs.make_env(NAME, action_cost=0.5, state_bound=2.0,
                                  max_steps_in_episode=7)
    assert params2 == RegulatorParams(7, 0.5, 2.0, 1.0)
    assert envs.env_spec(env2, params2, NAME).action_high == (4.0,)


def test_names_are_checked_and_suggested():
    envs.check_env_name(NAME)
    with pytest.raises(ValueError, match=r"env='Regulator1D-v1'.*did you mean 'Regulator1D-v0'"):
        envs.check_env_name("Regulator1D-v1")
    with pytest.raises(ValueError, match=r"choose one of: .*Regulator1D-v0"):
        envs.make_env("zzzzzzzzzzzz")
    # gymnax's own constructor still accepts only gymnax's names.
    with pytest.raises(ValueError, match="is not a gymnax environment"):
        envs.make_gymnax_env(NAME)


@pytest.mark.parametrize("kwargs, match", [
    (dict(action_cost=-0.1), r"action_cost=-0.1 must be finite and >= 0"),
    (dict(state_bound=0.0), r"state_bound=0.0 must be finite and > 0"),
    (dict(init_bound=6.0), r"init_bound=6.0 must lie in \(0, state_bound=5.0\]"),
    (dict(max_steps_in_episode=0), r"max_steps_in_episode=0 must be a positive integer"),
    (dict(gamma=0.9), r"no parameter 'gamma'; pass fields of RegulatorParams"),
])
def test_bad_parameters_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        envs.make_env(NAME, **kwargs)


def test_importing_it_imports_no_gymnax():
    code = (
        "import sys, acjax.envs as e\n"
        "e.Regulator1D(); e.optimal_gain(action_cost=0.01, gamma=0.99)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('gymnax', 'brax'))\n"
        "assert not loaded, loaded\n"
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH"))
                                         if p)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]


# ----------------------------------------------------------------------------------------------
# Dynamics, rewards, truncation and auto-reset, by hand
# ----------------------------------------------------------------------------------------------


def test_steps_by_hand_with_truncation_auto_reset_and_final_observation():
    env = Regulator1D(max_steps_in_episode=3, action_cost=0.1)
    params = env.default_params
    obs, state = env.reset(jax.random.PRNGKey(0), params)
    s = float(state.s)
    assert obs.shape == (1,) and obs.dtype == jnp.float32 and float(obs[0]) == s
    assert -1.0 <= s <= 1.0 and int(state.time) == 0
    for t, a in enumerate([0.5, -0.25, 1.0]):
        key = jax.random.PRNGKey(10 + t)
        obs, state, reward, term, trunc, info = env.step(key, state, jnp.array([a]), params)
        s_next = _f32(s) + _f32(a)
        # r_t = -(s_t^2 + c a_t^2), with s_t the state the action is taken in.
        np.testing.assert_allclose(reward, -(_f32(s) ** 2 + _f32(0.1) * _f32(a) ** 2), rtol=1e-6)
        assert reward.dtype == jnp.float32 and reward.shape == ()
        assert not bool(term) and not bool(info["terminated"])
        np.testing.assert_allclose(info["final_observation"], [s_next], rtol=1e-6)
        if t < 2:
            assert not bool(trunc) and int(state.time) == t + 1
            np.testing.assert_allclose(obs, [s_next], rtol=1e-6)
            s = float(state.s)
        else:  # the time limit: truncated, and reset from the step's key
            assert bool(trunc) and bool(info["truncated"]) and int(state.time) == 0
            reset_obs, reset_state = env.reset(key, params)
            np.testing.assert_array_equal(obs, reset_obs)
            assert float(state.s) == float(reset_state.s) != float(s_next)


def test_state_and_action_clipping():
    env, params = envs.make_env(NAME)  # state_bound 5: states in [-5, 5], actions in [-10, 10]
    raw = Regulator1D()
    _, state = env.reset(jax.random.PRNGKey(0), params)
    state = state.replace(env_state=state.env_state.replace(s=jnp.float32(4.5)))
    key = jax.random.PRNGKey(1)
    obs, _, reward, *_ = env.step(key, state, jnp.array([2.0]), params)
    np.testing.assert_allclose(obs, [5.0])  # s' = clip(4.5 + 2, -5, 5)
    np.testing.assert_allclose(reward, -(4.5**2 + 0.01 * 2.0**2), rtol=1e-6)
    big = env.step(key, state, jnp.array([-100.0]), params)
    edge = env.step(key, state, jnp.array([-10.0]), params)
    np.testing.assert_allclose(big[0], [-5.0])  # clip(4.5 - 10)
    np.testing.assert_allclose(big[2], edge[2])  # the reward sees the clipped action
    np.testing.assert_allclose(big[2], -(4.5**2 + 0.01 * 100.0), rtol=1e-6)
    # The bare environment clips too.
    raw_out = raw.step(key, state.env_state, jnp.array([-100.0]), params)
    np.testing.assert_allclose(raw_out[2], big[2])
    with pytest.raises(ValueError, match=r"action has shape \(2,\); pass one action of shape"):
        raw.step(key, state.env_state, jnp.array([1.0, 2.0]), params)


def test_vmapped_scan_never_terminates_truncates_every_t_steps_and_counts_episodes():
    env, params = envs.make_env(NAME)
    num_envs, steps = 4, 45

    actions = np.random.default_rng(0).normal(0.0, 3.0, (steps, num_envs, 1)).astype(np.float32)
    keys = jax.random.split(jax.random.PRNGKey(0), steps * num_envs + num_envs)
    reset_keys, step_keys = keys[:num_envs], keys[num_envs:].reshape(steps, num_envs, -1)

    def step(carry, xs):
        obs, state = carry
        key, action = xs
        out = jax.vmap(env.step, in_axes=(0, 0, 0, None))(key, state, action, params)
        nobs, nstate, reward, term, trunc, info = out
        return (nobs, nstate), (obs, reward, term, trunc, info["episode_return"],
                                info["episode_length"])

    @jax.jit
    def run(reset_keys, step_keys, actions):
        carry = jax.vmap(env.reset, in_axes=(0, None))(reset_keys, params)
        return jax.lax.scan(step, carry, (step_keys, actions))[1]

    o, r, term, trunc, ep_ret, ep_len = jax.device_get(run(reset_keys, step_keys, actions))
    a = actions
    assert not np.any(term)
    np.testing.assert_array_equal(np.flatnonzero(trunc[:, 0]), [19, 39])
    assert np.all(trunc == trunc[:, :1])
    np.testing.assert_array_equal(ep_len[19], 20)
    np.testing.assert_allclose(ep_ret[19], np.sum(r[:20], axis=0), rtol=1e-5)
    np.testing.assert_allclose(ep_ret[39], np.sum(r[20:40], axis=0), rtol=1e-5)
    np.testing.assert_allclose(r, -(o[..., 0] ** 2 + 0.01 * np.clip(a[..., 0], -10, 10) ** 2),
                               rtol=1e-5)
    # Fresh episodes start inside [-init_bound, init_bound].
    assert np.all(np.abs(o[20]) <= 1.0) and np.all(np.abs(o[40]) <= 1.0)


# ----------------------------------------------------------------------------------------------
# The optimum
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [0.5, 0.9, 0.99, 1.0])
def test_without_action_cost_the_optimum_is_exactly_minus_one(gamma):
    assert optimal_gain(action_cost=0.0, gamma=gamma) == (-1.0, 1.0)


def _fixed_point(c, gamma, iters=10_000):
    """P <- 1 + c k^2 + gamma P (1 - k)^2 with k = gamma P / (c + gamma P), from P = 1."""
    p = 1.0
    for _ in range(iters):
        k = gamma * p / (c + gamma * p)
        p = 1.0 + c * k * k + gamma * p * (1.0 - k) ** 2
    return -gamma * p / (c + gamma * p), p


@pytest.mark.parametrize("c", [0.01, 0.1, 0.5, 2.0, 50.0])
@pytest.mark.parametrize("gamma", [0.3, 0.9, 0.99, 1.0])
def test_closed_form_root_matches_the_fixed_point_iteration(c, gamma):
    theta, p = optimal_gain(action_cost=c, gamma=gamma)
    theta_fp, p_fp = _fixed_point(c, gamma)
    np.testing.assert_allclose([theta, p], [theta_fp, p_fp], rtol=1e-12)
    k = -theta
    assert 0.0 < k < 1.0 and p > 1.0
    np.testing.assert_allclose(p, 1 + c * k**2 + gamma * p * (1 - k) ** 2, rtol=1e-12)


@pytest.mark.parametrize("c, gamma", [(0.01, 0.99), (0.1, 0.9), (0.5, 0.99), (1.0, 0.95)])
def test_optimal_slope_is_the_best_linear_policy_on_a_grid(c, gamma):
    """For a = theta s, s_t = (1 + theta)^t s_0 (no clipping), so the discounted cost is
    s_0^2 (1 + c theta^2) sum_t (gamma (1 + theta)^2)^t = s_0^2 (1 + c theta^2) /
    (1 - gamma (1 + theta)^2) where gamma (1 + theta)^2 < 1."""
    step = 1e-5
    theta = np.arange(-1.9, -0.05, step)
    ratio = gamma * (1.0 + theta) ** 2
    assert np.all(ratio < 1)
    cost = (1.0 + c * theta**2) / (1.0 - ratio)
    best = theta[np.argmin(cost)]
    theta_star, p = optimal_gain(action_cost=c, gamma=gamma)
    assert abs(best - theta_star) <= step
    np.testing.assert_allclose(cost.min(), p, rtol=1e-8)  # the cost per s_0^2 is P


def test_rolling_out_the_optimal_policy_earns_the_optimal_value():
    c, gamma, s0 = 0.5, 0.9, 0.8
    theta, _ = optimal_gain(action_cost=c, gamma=gamma)
    env = Regulator1D(action_cost=c, max_steps_in_episode=1000)
    params = env.default_params
    _, state = env.reset(jax.random.PRNGKey(0), params)
    state = state.replace(s=jnp.float32(s0))

    def step(state, key):
        _, state_next, reward, *_ = env.step(key, state, jnp.float32(theta) * state.s[None],
                                             params)
        return state_next, reward

    _, rewards = jax.lax.scan(step, state, jax.random.split(jax.random.PRNGKey(1), 200))
    discounted = np.sum(np.asarray(rewards, np.float64) * gamma ** np.arange(200))
    np.testing.assert_allclose(discounted, optimal_value(s0, action_cost=c, gamma=gamma),
                               rtol=1e-5)
    np.testing.assert_allclose(optimal_value(np.array([[1.0, -2.0]]), action_cost=0.0, gamma=0.9),
                               [[-1.0, -4.0]])


@pytest.mark.parametrize("kwargs, match", [
    (dict(action_cost=-1.0, gamma=0.9), r"action_cost=-1.0 must be finite and >= 0"),
    (dict(action_cost=0.1, gamma=0.0), r"gamma=0.0 must lie in \(0, 1\]"),
    (dict(action_cost=0.1, gamma=1.5), r"gamma=1.5 must lie in \(0, 1\]"),
])
def test_optimal_gain_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optimal_gain(**kwargs)
