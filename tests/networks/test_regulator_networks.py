"""The 1-D regulator's linear-Gaussian actor and quadratic critic (`make_linear_quadratic`)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acjax.distributions import DiagGaussian
from acjax.envs import EnvSpec
from acjax.networks import ActorCritic, dense, make_linear_quadratic
from acjax.networks import actor_critic as actor_critic_module
from acjax.networks import regulator as regulator_module

SPEC = EnvSpec("Regulator1D-v0", (1,), False, 1, (-10.0,), (10.0,), 20)
PARAMS = {
    "actor": {"theta1": jnp.float32(-0.7), "log_var": jnp.float32(-1.2)},
    "critic": {"phi1": jnp.float32(0.3), "phi2": jnp.float32(-1.5)},
}


def test_it_matches_the_actor_critic_contract():
    """Field for field an `ActorCritic`, with the same log-std bounds (declared separately so
    that `acjax.networks.actor_critic` can build these networks without an import loop)."""
    assert regulator_module.LinearQuadratic._fields == ActorCritic._fields
    assert (regulator_module.LOG_STD_MIN, regulator_module.LOG_STD_MAX) == (
        actor_critic_module.LOG_STD_MIN, actor_critic_module.LOG_STD_MAX)


def test_init_is_zero_with_the_given_log_variance():
    net = make_linear_quadratic(SPEC, dense=dense, init_log_var=-0.5)
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1,)))
    assert jax.tree.map(float, params) == {
        "actor": {"theta1": 0.0, "log_var": -0.5}, "critic": {"phi1": 0.0, "phi2": 0.0}}
    assert all(x.shape == () and x.dtype == jnp.float32 for x in jax.tree.leaves(params))
    obs = np.array([[0.3], [-2.0]], np.float32)
    dist, value = jax.jit(net.policy_and_value)(params, obs)
    np.testing.assert_allclose(dist.mean, 0.0)
    np.testing.assert_allclose(dist.log_std, -0.25)
    np.testing.assert_allclose(value, 0.0)


@pytest.mark.parametrize("batch", [(), (7,), (3, 5)])
def test_shapes(batch):
    net = make_linear_quadratic(SPEC)
    obs = np.linspace(-1.0, 1.0, math.prod(batch), dtype=np.float32).reshape(batch + (1,))

    @jax.jit
    def run(params, obs):
        dist, value = net.policy_and_value(params, obs)
        action = dist.sample(jax.random.PRNGKey(1))
        return (dist, value, action, dist.log_prob(action), net.value(params, obs),
                net.policy(params, obs).mean)

    dist, value, action, log_prob, value_alone, mean_alone = run(PARAMS, obs)
    assert isinstance(dist, DiagGaussian)
    assert dist.mean.shape == dist.log_std.shape == batch + (1,)
    assert value.shape == batch and value.dtype == jnp.float32
    assert action.shape == batch + (1,) and log_prob.shape == batch
    np.testing.assert_array_equal(value_alone, value)
    np.testing.assert_array_equal(mean_alone, dist.mean)


def test_values_and_log_prob_equal_the_formulas():
    net = make_linear_quadratic(SPEC)
    s = np.array([-2.0, -0.5, 0.0, 0.25, 1.5], np.float32)
    a = np.array([1.0, 0.2, -0.3, 0.0, -1.4], np.float32)
    dist, value = jax.jit(net.policy_and_value)(PARAMS, s[:, None])
    theta1, log_var, phi1, phi2 = -0.7, -1.2, 0.3, -1.5
    np.testing.assert_allclose(dist.mean[:, 0], theta1 * s, rtol=1e-6)
    np.testing.assert_allclose(np.exp(dist.log_std[:, 0]), math.exp(log_var / 2), rtol=1e-6)
    np.testing.assert_allclose(value, phi1 * s + phi2 * s**2, rtol=1e-6)
    # log N(a; theta1 s, exp(theta2)) = -(a - theta1 s)^2 / (2 exp(theta2)) - theta2 / 2 - log(2 pi) / 2
    expected = -((a - theta1 * s) ** 2) / (2 * math.exp(log_var)) - log_var / 2 \
        - 0.5 * math.log(2 * math.pi)
    log_prob = jax.jit(lambda d, x: d.log_prob(x))(dist, a[:, None])
    np.testing.assert_allclose(log_prob, expected, rtol=1e-5)


def test_log_std_is_clipped():
    net = make_linear_quadratic(SPEC)
    policy = jax.jit(net.policy)
    for log_var, log_std in [(10.0, 2.0), (-50.0, -20.0)]:
        params = {**PARAMS, "actor": {**PARAMS["actor"], "log_var": jnp.float32(log_var)}}
        np.testing.assert_allclose(policy(params, np.ones((2, 1), np.float32)).log_std, log_std)


def test_gradients_are_the_score_function_and_the_features():
    net = make_linear_quadratic(SPEC)
    s = np.array([0.5, -1.0, 2.0], np.float32)
    a = np.array([0.1, 0.4, -1.0], np.float32)

    def log_prob_sum(params):
        return jnp.sum(net.policy(params, s[:, None]).log_prob(a[:, None]))

    def value_sum(params):
        return jnp.sum(net.value(params, s[:, None]))

    @jax.jit
    def grads(params):
        return jax.grad(log_prob_sum)(params), jax.grad(value_sum)(params)

    p_grads, v_grads = jax.device_get(grads(PARAMS))
    var = math.exp(-1.2)
    mu = -0.7 * s
    # d/d theta1 log pi = (a - theta1 s) s / sigma^2;  d/d theta2 = ((a - mu)^2 / sigma^2 - 1) / 2.
    g_theta1 = np.sum((a - mu) * s / var)
    g_log_var = np.sum(((a - mu) ** 2 / var - 1.0) / 2)
    assert abs(float(p_grads["actor"]["theta1"])) > 0.1
    np.testing.assert_allclose(p_grads["actor"]["theta1"], g_theta1, rtol=1e-5)
    np.testing.assert_allclose(p_grads["actor"]["log_var"], g_log_var, rtol=1e-5)
    assert p_grads["critic"]["phi1"] == 0.0 and p_grads["critic"]["phi2"] == 0.0
    np.testing.assert_allclose(v_grads["critic"]["phi1"], np.sum(s), rtol=1e-6)
    np.testing.assert_allclose(v_grads["critic"]["phi2"], np.sum(s**2), rtol=1e-6)
    assert v_grads["actor"]["theta1"] == 0.0 and v_grads["actor"]["log_var"] == 0.0


@pytest.mark.parametrize("spec", [
    EnvSpec("CartPole-v1", (4,), True, 2, None, None, 500),
    EnvSpec("Pendulum-v1", (3,), False, 1, (-2.0,), (2.0,), 200),
    EnvSpec("Reacher-misc", (1,), False, 2, (-1.0, -1.0), (1.0, 1.0), 200),
], ids=["discrete", "3-d obs", "2-d action"])
def test_other_spaces_are_refused_with_the_fix(spec):
    with pytest.raises(ValueError, match=rf"env='{spec.name}' has observations of shape .*"
                                         r"one scalar observation and one continuous action.*"
                                         r"--network.architecture mlp"):
        make_linear_quadratic(spec)


def test_observations_without_a_trailing_unit_axis_are_refused():
    net = make_linear_quadratic(SPEC)
    with pytest.raises(ValueError, match=r"policy: obs has shape \(3,\); pass observations of "
                                         r"shape \[..., 1\]"):
        net.policy(PARAMS, jnp.ones((3,)))
    with pytest.raises(ValueError, match=r"value: obs has shape \(2, 3\)"):
        net.value(PARAMS, jnp.ones((2, 3)))
