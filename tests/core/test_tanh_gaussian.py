"""Tests for `acjax.distributions.TanhGaussian`."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acjax.distributions import DiagGaussian, TanhGaussian

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _np_log_prob_naive(mean, log_std, u):
    """float64 change of variables with the textbook formulas: Σ log N(u) - Σ log(1 - tanh(u)²)."""
    mean, log_std, u = (np.asarray(x, np.float64) for x in (mean, log_std, u))
    std = np.exp(log_std)
    log_n = -0.5 * ((u - mean) / std) ** 2 - log_std - HALF_LOG_2PI
    return np.sum(log_n - np.log(1.0 - np.tanh(u) ** 2), axis=-1)


def _np_log_prob_exact(mean, log_std, u):
    """float64 reference valid for any u: 1 - tanh(u)² = 4 / (e^u + e^-u)²."""
    mean, log_std, u = (np.asarray(x, np.float64) for x in (mean, log_std, u))
    std = np.exp(log_std)
    log_n = -0.5 * ((u - mean) / std) ** 2 - log_std - HALF_LOG_2PI
    return np.sum(log_n - (np.log(4.0) - 2.0 * np.logaddexp(u, -u)), axis=-1)


def _moderate_params(key, shape, state_dependent_std):
    k1, k2, k3 = jax.random.split(key, 3)
    mean = jax.random.uniform(k1, shape, minval=-1.0, maxval=1.0)
    std_shape = shape if state_dependent_std else shape[-1:]
    log_std = jax.random.uniform(k2, std_shape, minval=-1.0, maxval=0.3)
    u = jax.random.uniform(k3, shape, minval=-2.0, maxval=2.0)
    return mean, log_std, u


@pytest.mark.parametrize("state_dependent_std", [True, False])
def test_log_prob_matches_float64_change_of_variables(state_dependent_std):
    mean, log_std, u = _moderate_params(jax.random.PRNGKey(0), (6, 3), state_dependent_std)
    dist = TanhGaussian(mean, log_std)
    actions = jnp.tanh(u)
    expected = _np_log_prob_naive(mean, np.broadcast_to(log_std, mean.shape), u)
    np.testing.assert_allclose(jax.jit(TanhGaussian.log_prob)(dist, actions), expected,
                               rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(dist.log_prob_pre_tanh(u), expected, rtol=1e-5, atol=1e-5)
    assert dist.log_prob(actions).shape == (6,)
    # The tanh term matters: the result is not the Gaussian's log-density of u.
    assert np.max(np.abs(expected - np.asarray(DiagGaussian(mean, log_std).log_prob(u)))) > 0.1


def test_log_prob_hand_computed():
    # 1-D, μ = 0, σ = 1, a = tanh(u) with u = 0.5:
    # log N(0.5) = -0.125 - 0.9189385 = -1.0439385; 1 - tanh(0.5)² = 0.7864477, log = -0.2402387;
    # log π = -1.0439385 + 0.2402387 = -0.8036998.
    dist = TanhGaussian(jnp.zeros((1,)), jnp.zeros((1,)))
    np.testing.assert_allclose(dist.log_prob(jnp.tanh(jnp.array([0.5]))), -0.8036998, atol=1e-5)
    # At a = 0 the Jacobian is 1: log π(0) = log N(0) = -0.9189385.
    np.testing.assert_allclose(dist.log_prob(jnp.array([0.0])), -0.9189385, atol=1e-6)


def test_sample_and_log_prob_agree_with_log_prob_and_diag_gaussian():
    mean, log_std, _ = _moderate_params(jax.random.PRNGKey(1), (64, 2), True)
    dist = TanhGaussian(mean, log_std)
    key = jax.random.PRNGKey(2)
    actions, log_probs = jax.jit(TanhGaussian.sample_and_log_prob)(dist, key)
    assert actions.shape == (64, 2) and log_probs.shape == (64,)
    assert actions.dtype == jnp.float32 and log_probs.dtype == jnp.float32
    # The same noise as DiagGaussian, squashed.
    u = DiagGaussian(mean, log_std).sample(key)
    np.testing.assert_allclose(actions, np.tanh(np.asarray(u, np.float64)), atol=1e-6)
    np.testing.assert_allclose(dist.sample(key), actions, atol=1e-6)  # jit vs eager
    # Scoring the returned action (atanh round trip) gives the same log-density.
    moderate = np.max(np.abs(np.asarray(u)), axis=-1) < 3.0
    assert moderate.sum() > 50
    np.testing.assert_allclose(np.asarray(dist.log_prob(actions))[moderate],
                               np.asarray(log_probs)[moderate], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(log_probs, _np_log_prob_exact(mean, log_std, u),
                               rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(dist.entropy_estimate(key), -log_probs, atol=1e-5)


def test_mode_and_actions_in_range():
    mean = jnp.array([[0.0, 2.0, -30.0]])
    dist = TanhGaussian(mean, jnp.array([0.0, 1.0, 3.0]))
    np.testing.assert_allclose(dist.mode(), np.tanh([[0.0, 2.0, -30.0]]), atol=1e-7)
    big = TanhGaussian(jnp.zeros((1000, 2)), jnp.full((2,), 2.0))
    actions = big.sample(jax.random.PRNGKey(0))
    assert np.all(np.abs(np.asarray(actions)) <= 1.0)


@pytest.mark.parametrize("mu,log_std", [(0.0, math.log(0.5)), (0.8, math.log(0.7)),
                                        (-1.0, math.log(0.3))])
def test_density_integrates_to_one(mu, log_std):
    grid = np.linspace(-1.0, 1.0, 200_001)[1:-1]
    dist = TanhGaussian(jnp.full((grid.size, 1), mu), jnp.full((1,), log_std))
    log_prob = jax.jit(TanhGaussian.log_prob)(dist, jnp.asarray(grid[:, None], jnp.float32))
    density = np.exp(np.asarray(log_prob, np.float64))
    total = np.trapezoid(density, grid)
    assert abs(total - 1.0) < 1e-3, total
    # And the one-sample entropy estimate averages to the numerical entropy -∫ p log p.
    entropy = -np.trapezoid(density * np.log(np.maximum(density, 1e-300)), grid)
    samples = TanhGaussian(jnp.full((20_000, 1), mu), jnp.full((1,), log_std))
    estimate = float(jnp.mean(jax.jit(TanhGaussian.entropy_estimate)(samples,
                                                                    jax.random.PRNGKey(3))))
    # Standard error of the mean of 20k samples of -log π is below 0.01.
    assert abs(estimate - entropy) < 0.04, (estimate, entropy)


def test_log_prob_gradients_match_analytic():
    # d/dμ log π = (u - μ) / σ², d/dlog σ log π = ((u - μ) / σ)² - 1, for fixed actions.
    mean, log_std, u = _moderate_params(jax.random.PRNGKey(4), (5, 2), True)
    actions = jnp.tanh(u)
    u_back = np.arctanh(np.asarray(actions, np.float64))
    g_mean, g_log_std = jax.jit(jax.grad(
        lambda m, s: jnp.sum(TanhGaussian(m, s).log_prob(actions)), (0, 1)))(mean, log_std)
    std = np.exp(np.asarray(log_std, np.float64))
    z = (u_back - np.asarray(mean, np.float64)) / std
    np.testing.assert_allclose(g_mean, z / std, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(g_log_std, z**2 - 1.0, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------
# Stability: saturated tanh in float32
# ----------------------------------------------------------------------------

SATURATED_MEAN = jnp.array([[20.0, -20.0], [20.0, 0.0], [-20.0, 20.0], [0.0, 0.0]])
LOG_STD = jnp.array([[-5.0, 0.0], [0.0, 2.0], [-1.0, -1.0], [2.0, 3.0]])
EDGE_ACTIONS = jnp.array(
    [[1 - 1e-7, -(1 - 1e-7)], [1.0, 0.0], [-1.0, 1.0], [1 - 1e-7, 1.0]], jnp.float32)


def _all_finite(tree):
    return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(tree))


def test_naive_formula_is_not_finite_here():
    # Makes the stability tests below meaningful: textbook float32 formulas give -inf / nan.
    u = SATURATED_MEAN
    naive = jnp.log(1.0 - jnp.tanh(u) ** 2)
    assert not _all_finite(naive)
    assert not _all_finite(jnp.arctanh(EDGE_ACTIONS))


def test_log_prob_and_gradients_finite_at_saturated_means_and_edge_actions():
    def loss(mean, log_std, actions):
        return jnp.sum(TanhGaussian(mean, log_std).log_prob(actions))

    value = jax.jit(TanhGaussian.log_prob)(TanhGaussian(SATURATED_MEAN, LOG_STD), EDGE_ACTIONS)
    grads = jax.jit(jax.grad(loss, (0, 1, 2)))(SATURATED_MEAN, LOG_STD, EDGE_ACTIONS)
    assert value.dtype == jnp.float32 and _all_finite(value), value
    assert _all_finite(grads), grads
    # ±1 is treated as ±(1 - eps): the same log-density as the largest float32 below 1 - 1e-7.
    dist = TanhGaussian(jnp.zeros((1, 1)), jnp.zeros((1,)))
    eps = dist.clip_eps()
    assert eps == pytest.approx(2.0**-23)
    np.testing.assert_allclose(dist.log_prob(jnp.array([[1.0]])),
                               dist.log_prob(jnp.array([[1.0 - eps]], jnp.float32)))
    # Value at the clip point against the float64 reference at u = atanh(1 - 2^-23).
    u_edge = np.arctanh(np.float64(np.float32(1.0 - eps)))
    np.testing.assert_allclose(dist.log_prob(jnp.array([[1.0]])),
                               _np_log_prob_exact([[0.0]], [0.0], [[u_edge]]), rtol=1e-5)


def test_reparametrised_path_finite_and_accurate_at_saturation():
    key = jax.random.PRNGKey(5)

    def objective(mean, log_std):
        actions, log_probs = TanhGaussian(mean, log_std).sample_and_log_prob(key)
        return jnp.sum(actions) + jnp.sum(log_probs), (actions, log_probs)

    (_, (actions, log_probs)), grads = jax.jit(
        jax.value_and_grad(objective, (0, 1), has_aux=True))(SATURATED_MEAN, LOG_STD)
    assert _all_finite(log_probs) and _all_finite(grads) and _all_finite(actions)
    assert np.all(np.abs(np.asarray(actions)) <= 1.0)
    entropy_grads = jax.jit(jax.grad(
        lambda m, s: jnp.sum(TanhGaussian(m, s).entropy_estimate(key)), (0, 1)))(
        SATURATED_MEAN, LOG_STD)
    assert _all_finite(entropy_grads)
    # The values are right, not just finite: float64 reference at the same u.
    u = DiagGaussian(SATURATED_MEAN, LOG_STD).sample(key)
    np.testing.assert_allclose(log_probs, _np_log_prob_exact(SATURATED_MEAN, LOG_STD, u),
                               rtol=1e-4)
    # At μ = ±20 the log-det term is ≈ 2 log 2 - 2|u|, so along the path d log π / dμ =
    # d(-log det)/du = 2 tanh(u) = ±2 (the Gaussian term -½ε² does not depend on μ), and
    # d tanh(u)/du rounds to 0: the objective's gradient is exactly ±2.
    np.testing.assert_allclose(np.asarray(grads[0])[0], [2.0, -2.0], atol=1e-6)
    np.testing.assert_allclose(np.asarray(grads[0])[2], [-2.0, 2.0], atol=1e-6)


def test_log_std_of_too_high_rank_raises():
    dist = TanhGaussian(jnp.zeros((3,)), jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match="log_std"):
        dist.log_prob(jnp.zeros((3,)))
    with pytest.raises(ValueError, match="mean"):
        TanhGaussian(jnp.zeros(()), jnp.zeros(())).mode()
