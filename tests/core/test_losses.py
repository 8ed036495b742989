"""Tests for `acjax.losses`."""

import math
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rlax
from closeness import assert_close, report_errors  # noqa: F401 - report_errors: a fixture
from hypothesis import given, settings
from hypothesis import strategies as st

from acjax import losses
from acjax.distributions import Categorical

TOL = 1e-6

def _assert_close(name, actual, expected, tol=TOL):
    assert_close(name, actual, expected, tol)


def f32(x):
    return jnp.asarray(x, jnp.float32)


def _is_scalar_dict(metrics):
    return isinstance(metrics, dict) and all(jnp.shape(v) == () for v in metrics.values())


# ----------------------------------------------------------------------------
# Hand-computed values
# ----------------------------------------------------------------------------


def test_policy_gradient_loss_hand_computed():
    log_probs = f32([-1.0, -0.5, -2.0, -0.25])
    advantages = f32([1.0, -2.0, 0.5, 4.0])
    # A * log π = [-1, 1, -1, -1], sum -2, mean -0.5, loss = 0.5.
    loss, metrics = losses.policy_gradient_loss(log_probs, advantages)
    _assert_close("pg hand", loss, 0.5)
    assert _is_scalar_dict(metrics) and set(metrics) == {"pg_loss"}
    # dL/d log π = -A / N = [-0.25, 0.5, -0.125, -1].
    grad = jax.grad(lambda lp: losses.policy_gradient_loss(lp, advantages)[0])(log_probs)
    _assert_close("pg hand grad", grad, [-0.25, 0.5, -0.125, -1.0])


# Five samples with ε = 0.2, one per branch:
#   r     A     r A    clip(r) A   min    branch
#   1.5   2     3.0    2.4         2.4    clipped   (A > 0, r > 1 + ε)
#   0.5   2     1.0    1.6         1.0    unclipped (A > 0, r < 1 - ε)
#   0.5  -1    -0.5   -0.8        -0.8    clipped   (A < 0, r < 1 - ε)
#   1.5  -1    -1.5   -1.2        -1.5    unclipped (A < 0, r > 1 + ε)
#   1.1   3     3.3    3.3         3.3    inside the trust region
# Objective mean = (2.4 + 1.0 - 0.8 - 1.5 + 3.3) / 5 = 4.4 / 5 = 0.88, loss = -0.88.
# Gradient wrt log π: -(r A) / N on unclipped samples, 0 on clipped ones:
#   [0, -2 * 0.5 / 5, 0, 1.5 / 5, -3.3 / 5] = [0, -0.2, 0, 0.3, -0.66].
PPO_RATIOS = [1.5, 0.5, 0.5, 1.5, 1.1]
PPO_ADVANTAGES = [2.0, 2.0, -1.0, -1.0, 3.0]
PPO_OBJECTIVES = [2.4, 1.0, -0.8, -1.5, 3.3]
PPO_GRAD_PER_SAMPLE = [0.0, -1.0, 0.0, 1.5, -3.3]  # -(r A) where unclipped, times N


def _ppo_inputs(ratios):
    old_log_probs = f32([-1.0, -0.3, -2.0, -0.7, -1.2][: len(ratios)])
    log_probs = old_log_probs + f32(np.log(ratios))
    return log_probs, old_log_probs


def test_ppo_clip_loss_hand_computed():
    log_probs, old_log_probs = _ppo_inputs(PPO_RATIOS)
    advantages = f32(PPO_ADVANTAGES)
    loss, metrics = losses.ppo_clip_loss(log_probs, old_log_probs, advantages, clip_eps=0.2)
    _assert_close("ppo hand", loss, -0.88)
    assert _is_scalar_dict(metrics)
    # |r - 1| > 0.2 for 4 of 5 samples.
    _assert_close("ppo hand clip_fraction", metrics["clip_fraction"], 0.8)
    # (1.5 + 0.5 + 0.5 + 1.5 + 1.1) / 5 = 1.02.
    _assert_close("ppo hand ratio_mean", metrics["clip_ratio_mean"], 1.02)
    # mean[(r - 1) - log r]:
    #   r = 1.5: 0.5 - 0.4054651 = 0.0945349;  r = 0.5: -0.5 + 0.6931472 = 0.1931472;
    #   r = 1.1: 0.1 - 0.0953102 = 0.0046898;  (2 * 0.0945349 + 2 * 0.1931472 + 0.0046898) / 5.
    _assert_close("ppo hand approx_kl", metrics["clip_approx_kl"], 0.5800540 / 5, tol=1e-6)
    _assert_close("ppo hand clip_loss", metrics["clip_loss"], -0.88)
    grad = jax.grad(
        lambda lp: losses.ppo_clip_loss(lp, old_log_probs, advantages, clip_eps=0.2)[0])(
        log_probs)
    _assert_close("ppo hand grad", grad, np.array(PPO_GRAD_PER_SAMPLE) / 5, tol=1e-6)


@pytest.mark.parametrize("i", range(5), ids=["clip+", "unclip+", "clip-", "unclip-", "inside"])
def test_ppo_clip_loss_each_branch(i):
    log_probs, old_log_probs = _ppo_inputs([PPO_RATIOS[i]])
    advantages = f32([PPO_ADVANTAGES[i]])

    def loss_fn(lp):
        return losses.ppo_clip_loss(lp, old_log_probs, advantages, clip_eps=0.2)

    (loss, metrics), grad = jax.value_and_grad(loss_fn, has_aux=True)(log_probs)
    _assert_close("ppo branch loss", loss, -PPO_OBJECTIVES[i], tol=2e-6)
    _assert_close("ppo branch grad", grad, [PPO_GRAD_PER_SAMPLE[i]], tol=2e-6)
    _assert_close("ppo branch clip_fraction", metrics["clip_fraction"], 0.0 if i == 4 else 1.0)


def test_ppo_clip_loss_at_old_policy_equals_policy_gradient():
    # At r = 1 the surrogate equals -mean(A) and its gradient is the vanilla policy gradient.
    advantages = f32([0.5, -1.5, 2.0])
    old_log_probs = f32([-0.1, -2.3, -1.0])
    (loss, metrics), grad = jax.value_and_grad(
        lambda lp: losses.ppo_clip_loss(lp, old_log_probs, advantages, clip_eps=0.2),
        has_aux=True)(old_log_probs)
    _assert_close("ppo at r=1", loss, -1.0 / 3)  # -(0.5 - 1.5 + 2) / 3
    _assert_close("ppo at r=1 grad", grad, -np.asarray(advantages) / 3)
    _assert_close("ppo at r=1 kl", metrics["clip_approx_kl"], 0.0)
    _assert_close("ppo at r=1 clip_fraction", metrics["clip_fraction"], 0.0)


def test_value_loss_unclipped_hand_computed():
    values = f32([1.0, 2.0, 3.0])
    targets = f32([1.5, 2.0, 1.0])
    # (v - t)² = [0.25, 0, 4], mean 4.25 / 3, loss = 0.5 * 4.25 / 3 = 0.7083333.
    loss, metrics = losses.value_loss(values, targets)
    _assert_close("value hand", loss, 0.5 * 4.25 / 3)
    _assert_close("value hand metric", metrics["value_loss"], 0.5 * 4.25 / 3)
    # Var[t] = mean([0, 0.25, 0.25]) = 1/6; t - v = [0.5, 0, -2], mean -0.5,
    # Var[t - v] = mean([1, 0.25, 2.25]) = 7/6; EV = 1 - 7 = -6.
    _assert_close("value hand explained_variance", metrics["value_explained_variance"], -6.0,
                  tol=1e-5)
    assert set(metrics) == {"value_loss", "value_explained_variance"}
    # dL/dv = (v - t) / N = [-0.5, 0, 2] / 3.
    grad = jax.grad(lambda v: losses.value_loss(v, targets)[0])(values)
    _assert_close("value hand grad", grad, np.array([-0.5, 0.0, 2.0]) / 3)


# Five samples with ε = 0.2, Vᶜ = V_old + clip(V - V_old, -ε, ε):
#   V_old   V     G      (V - G)²   Vᶜ     (Vᶜ - G)²   max    active
#   0       1     1      0          0.2    0.64        0.64   clipped   (grad 0)
#   0       1     0      1          0.2    0.04        1      unclipped (grad (V - G) / N = 0.2)
#   1       1.1   2      0.81       1.1    0.81        0.81   inside    (grad -0.9 / 5 = -0.18)
#   0      -1     0.5    2.25      -0.2    0.49        2.25   unclipped (grad -1.5 / 5 = -0.3)
#   0      -1    -1      0         -0.2    0.64        0.64   clipped   (grad 0)
# Loss = 0.5 * (0.64 + 1 + 0.81 + 2.25 + 0.64) / 5 = 0.5 * 5.34 / 5 = 0.534.
VALUE_OLD = [0.0, 0.0, 1.0, 0.0, 0.0]
VALUE_NEW = [1.0, 1.0, 1.1, -1.0, -1.0]
VALUE_TARGETS = [1.0, 0.0, 2.0, 0.5, -1.0]
VALUE_TERMS = [0.64, 1.0, 0.81, 2.25, 0.64]
VALUE_GRAD_PER_SAMPLE = [0.0, 1.0, -0.9, -1.5, 0.0]  # times N


def test_value_loss_clipped_hand_computed():
    values, targets, old_values = f32(VALUE_NEW), f32(VALUE_TARGETS), f32(VALUE_OLD)

    def loss_fn(v):
        return losses.value_loss(v, targets, old_values, clip_eps=0.2)

    (loss, metrics), grad = jax.value_and_grad(loss_fn, has_aux=True)(values)
    _assert_close("value clip hand", loss, 0.534, tol=1e-6)
    _assert_close("value clip hand grad", grad, np.array(VALUE_GRAD_PER_SAMPLE) / 5)
    # |V - V_old| > 0.2 for all but the third sample.
    _assert_close("value clip hand clip fraction", metrics["value_clip_fraction"], 0.8)
    assert _is_scalar_dict(metrics)


@pytest.mark.parametrize("i", range(5), ids=["clip+", "unclip+", "inside", "unclip-", "clip-"])
def test_value_loss_each_branch(i):
    def loss_fn(v):
        return losses.value_loss(v, f32([VALUE_TARGETS[i]]), f32([VALUE_OLD[i]]),
                                 clip_eps=0.2)[0]

    loss, grad = jax.value_and_grad(loss_fn)(f32([VALUE_NEW[i]]))
    _assert_close("value branch loss", loss, 0.5 * VALUE_TERMS[i], tol=2e-6)
    _assert_close("value branch grad", grad, [VALUE_GRAD_PER_SAMPLE[i]], tol=2e-6)


def test_explained_variance_edge_cases():
    targets = f32([1.0, -2.0, 3.0, 0.5])
    ev = "value_explained_variance"
    _assert_close("ev perfect", losses.value_loss(targets, targets)[1][ev], 1.0)
    mean_values = jnp.full((4,), jnp.mean(targets))
    _assert_close("ev mean predictor", losses.value_loss(mean_values, targets)[1][ev], 0.0,
                  tol=1e-6)
    # Constant targets have nothing to explain: 0, not NaN or inf.
    constant = jnp.full((4,), 2.0)
    value = losses.value_loss(f32([1.0, 2.0, 3.0, 4.0]), constant)[1][ev]
    assert np.isfinite(value) and value == 0.0


def test_entropy_bonus_hand_computed():
    bonus, metrics = losses.entropy_bonus(f32([0.5, 1.0, 1.5]))
    _assert_close("entropy hand", bonus, 1.0)
    _assert_close("entropy hand metric", metrics["entropy_mean"], 1.0)
    # The bonus increases with entropy: its gradient is +1 / N.
    grad = jax.grad(lambda e: losses.entropy_bonus(e)[0])(f32([0.5, 1.0, 1.5]))
    _assert_close("entropy hand grad", grad, np.full(3, 1.0 / 3))


def test_a2c_loss_hand_computed():
    log_probs = f32([-1.0, -0.5, -2.0, -0.25])
    advantages = f32([1.0, -2.0, 0.5, 4.0])
    values = f32([0.0, 1.0, 2.0, 3.0])
    targets = f32([1.0, 1.0, 2.0, 1.0])
    entropies = f32([1.0, 0.5, 0.25, 0.25])
    # policy 0.5 (as above); value 0.5 * (1 + 0 + 0 + 4) / 4 = 0.625; entropy 2 / 4 = 0.5.
    # total = 0.5 + 0.5 * 0.625 - 0.01 * 0.5 = 0.8075.
    loss, metrics = losses.a2c_loss(log_probs=log_probs, advantages=advantages, values=values,
                                    targets=targets, entropies=entropies, value_coef=0.5,
                                    entropy_coef=0.01)
    _assert_close("a2c hand", loss, 0.8075)
    expected = {"a2c_loss": 0.8075, "pg_loss": 0.5, "value_loss": 0.625, "entropy_mean": 0.5}
    for name, value in expected.items():
        _assert_close("a2c hand metrics", metrics[name], value)
    assert set(metrics) == {"a2c_loss", "pg_loss", "value_loss", "value_explained_variance",
                            "entropy_mean"}
    assert _is_scalar_dict(metrics)


def test_ppo_loss_hand_computed():
    log_probs, old_log_probs = _ppo_inputs(PPO_RATIOS)
    advantages = f32(PPO_ADVANTAGES)
    values, targets, old_values = f32(VALUE_NEW), f32(VALUE_TARGETS), f32(VALUE_OLD)
    entropies = f32([1.0, 1.0, 0.5, 0.5, 2.0])  # mean 1.0
    kwargs = dict(clip_eps=0.2, value_coef=0.5, entropy_coef=0.1)
    # Clipped values: -0.88 + 0.5 * 0.534 - 0.1 * 1.0 = -0.713.
    arrays = dict(log_probs=log_probs, old_log_probs=old_log_probs, advantages=advantages,
                  values=values, old_values=old_values, targets=targets, entropies=entropies)
    loss, metrics = losses.ppo_loss(**arrays, value_clip_eps=0.2, **kwargs)
    _assert_close("ppo total hand", loss, -0.713, tol=2e-6)
    _assert_close("ppo total hand metric", metrics["ppo_loss"], -0.713, tol=2e-6)
    _assert_close("ppo total hand value", metrics["value_loss"], 0.534, tol=1e-6)
    assert set(metrics) == {"ppo_loss", "clip_loss", "clip_fraction", "clip_approx_kl",
                            "clip_ratio_mean", "value_loss", "value_explained_variance",
                            "entropy_mean", "value_clip_fraction"}
    # Unclipped values: (v - t)² = [0, 1, 0.81, 2.25, 0], value loss 0.5 * 4.06 / 5 = 0.406;
    # total = -0.88 + 0.5 * 0.406 - 0.1 = -0.777.
    loss, metrics = losses.ppo_loss(**arrays, **kwargs)
    _assert_close("ppo total hand", loss, -0.777, tol=2e-6)
    _assert_close("ppo total hand value", metrics["value_loss"], 0.406, tol=1e-6)
    assert "value_clip_fraction" not in metrics


def test_normalize_advantages():
    # mean 2.5, population std sqrt(1.25) = 1.1180340.
    got = losses.normalize_advantages(f32([1.0, 2.0, 3.0, 4.0]))
    _assert_close("normalize hand", got, np.array([-1.5, -0.5, 0.5, 1.5]) / math.sqrt(1.25),
                  tol=1e-6)
    x = jax.random.normal(jax.random.PRNGKey(0), (8, 16)) * 3.0 + 5.0
    y = losses.normalize_advantages(x)
    assert y.shape == (8, 16)
    _assert_close("normalize mean", jnp.mean(y), 0.0, tol=1e-6)
    _assert_close("normalize std", jnp.std(y), 1.0, tol=1e-5)
    constant = losses.normalize_advantages(jnp.full((5,), 3.0))
    np.testing.assert_array_equal(constant, np.zeros(5))
    # A constant batch (zero variance) has a finite gradient, not NaN.
    grad = jax.grad(lambda a: jnp.sum(losses.normalize_advantages(a) * f32([1, 2, 3, 4, 5])))(
        jnp.full((5,), 3.0))
    assert np.all(np.isfinite(grad))


# ----------------------------------------------------------------------------
# Parity with rlax
# ----------------------------------------------------------------------------


def _random_batch(seed, n=64, num_actions=5):
    keys = jax.random.split(jax.random.PRNGKey(seed), 4)
    logits = 2.0 * jax.random.normal(keys[0], (n, num_actions))
    actions = jax.random.randint(keys[1], (n,), 0, num_actions)
    advantages = jax.random.normal(keys[2], (n,))
    old_log_probs = Categorical(logits).log_prob(actions) + 0.4 * jax.random.normal(keys[3], (n,))
    return logits, actions, advantages, old_log_probs


@pytest.fixture
def rlax_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        yield


@pytest.mark.parametrize("seed", [0, 1])
def test_policy_gradient_loss_matches_rlax(seed, rlax_warnings):
    logits, actions, advantages, _ = _random_batch(seed)
    weights = jnp.ones_like(advantages)

    def ours(lg):
        return losses.policy_gradient_loss(Categorical(lg).log_prob(actions), advantages)[0]

    def theirs(lg):
        # rlax: mean(-log π(a) * A * w) with stop_gradient(A), the same sign and normalisation.
        return rlax.policy_gradient_loss(lg, actions, advantages, weights)

    (ours_loss, ours_grad), (theirs_loss, theirs_grad) = jax.jit(
        lambda lg: (jax.value_and_grad(ours)(lg), jax.value_and_grad(theirs)(lg)))(logits)
    _assert_close("rlax policy_gradient_loss", ours_loss, theirs_loss)
    _assert_close("rlax policy_gradient_loss grad", ours_grad, theirs_grad)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("clip_eps", [0.1, 0.2, 0.3])
def test_ppo_clip_loss_matches_rlax(seed, clip_eps):
    _, _, advantages, old_log_probs = _random_batch(seed)
    log_probs = old_log_probs + 0.3 * jax.random.normal(jax.random.PRNGKey(seed + 100), (64,))

    def ours(lp):
        return losses.ppo_clip_loss(lp, old_log_probs, advantages, clip_eps=clip_eps)[0]

    def theirs(lp):
        # rlax: -mean(fmin(r A, clip(r, 1 - ε, 1 + ε) A)) over the batch.
        ratios = jnp.exp(lp - old_log_probs)
        return rlax.clipped_surrogate_pg_loss(ratios, advantages, clip_eps)

    (ours_loss, ours_grad), (theirs_loss, theirs_grad) = jax.jit(
        lambda lp: (jax.value_and_grad(ours)(lp), jax.value_and_grad(theirs)(lp)))(log_probs)
    _assert_close("rlax clipped_surrogate_pg_loss", ours_loss, theirs_loss)
    _assert_close("rlax clipped_surrogate_pg_loss grad", ours_grad, theirs_grad)


@jax.jit
def _ppo_ours_and_rlax(log_ratios, advantages, clip_eps):
    ours = losses.ppo_clip_loss(log_ratios, jnp.zeros_like(log_ratios), advantages,
                                clip_eps=clip_eps)[0]
    theirs = rlax.clipped_surrogate_pg_loss(jnp.exp(log_ratios), advantages, clip_eps)
    return ours, theirs


@settings(max_examples=40, deadline=None)
@given(
    data=st.lists(st.tuples(st.floats(-2.0, 2.0), st.floats(-5.0, 5.0)), min_size=8, max_size=8),
    clip_eps=st.floats(0.01, 0.9),
)
def test_ppo_clip_loss_matches_rlax_property(data, clip_eps):
    log_ratios, advantages = (f32(x) for x in zip(*data, strict=True))
    ours, theirs = _ppo_ours_and_rlax(log_ratios, advantages, f32(clip_eps))
    _assert_close("rlax clipped_surrogate_pg_loss (hypothesis)", ours, theirs, tol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_entropy_bonus_matches_rlax(seed, rlax_warnings):
    logits, _, _, _ = _random_batch(seed)
    logits = logits.at[0, 1].set(-1e9)  # a masked action
    weights = jnp.ones((logits.shape[0],))

    def ours(lg):
        # rlax.entropy_loss is -mean(H * w): the negated bonus.
        return -losses.entropy_bonus(Categorical(lg).entropy())[0]

    def theirs(lg):
        return rlax.entropy_loss(lg, weights)

    (ours_loss, ours_grad), (theirs_loss, theirs_grad), (ours_h, theirs_h) = jax.jit(
        lambda lg: (jax.value_and_grad(ours)(lg), jax.value_and_grad(theirs)(lg),
                    (Categorical(lg).entropy(), rlax.softmax().entropy(lg))))(logits)
    _assert_close("rlax entropy_loss", ours_loss, theirs_loss)
    _assert_close("rlax entropy_loss grad", ours_grad, theirs_grad)
    _assert_close("rlax softmax entropy", ours_h, theirs_h, tol=2e-6)


# ----------------------------------------------------------------------------
# Gradient flow
# ----------------------------------------------------------------------------


def _nonzero(x):
    return float(jnp.max(jnp.abs(x))) > 0.0


def _all_inputs(seed=0, shape=(4, 3)):
    keys = jax.random.split(jax.random.PRNGKey(seed), 7)
    names = ("log_probs", "old_log_probs", "advantages", "values", "old_values", "targets",
             "entropies")
    inputs = {name: jax.random.normal(k, shape) for name, k in zip(names, keys, strict=True)}
    # Large moves so that both policy and value clipping branches occur.
    inputs["log_probs"] = inputs["old_log_probs"] + 0.5 * inputs["log_probs"]
    return inputs


def _a2c_inputs(x):
    return {k: x[k] for k in ("log_probs", "advantages", "values", "targets", "entropies")}


def test_policy_gradient_loss_gradient_flow():
    x = _all_inputs()
    g_lp, g_adv = jax.grad(lambda lp, a: losses.policy_gradient_loss(lp, a)[0], argnums=(0, 1))(
        x["log_probs"], x["advantages"])
    assert _nonzero(g_lp)
    np.testing.assert_array_equal(g_adv, 0.0)


def test_ppo_clip_loss_gradient_flow():
    x = _all_inputs()
    grads = jax.grad(lambda lp, old, a: losses.ppo_clip_loss(lp, old, a, clip_eps=0.2)[0],
                     argnums=(0, 1, 2))(x["log_probs"], x["old_log_probs"], x["advantages"])
    assert _nonzero(grads[0])
    np.testing.assert_array_equal(grads[1], 0.0)
    np.testing.assert_array_equal(grads[2], 0.0)


@pytest.mark.parametrize("clipped", [False, True])
def test_value_loss_gradient_flow(clipped):
    x = _all_inputs()

    def loss_fn(v, t, old):
        if clipped:
            return losses.value_loss(v, t, old, clip_eps=0.2)[0]
        return losses.value_loss(v, t)[0]

    g_v, g_t, g_old = jax.grad(loss_fn, argnums=(0, 1, 2))(
        x["values"], x["targets"], x["old_values"])
    assert _nonzero(g_v)
    np.testing.assert_array_equal(g_t, 0.0)
    np.testing.assert_array_equal(g_old, 0.0)


def test_ppo_and_a2c_loss_gradient_flow():
    x = _all_inputs()

    def ppo(inputs):
        return losses.ppo_loss(**inputs, clip_eps=0.2, value_coef=0.5, entropy_coef=0.01,
                               value_clip_eps=0.2)[0]

    grads = jax.grad(ppo)(x)
    for name in ("log_probs", "values", "entropies"):
        assert _nonzero(grads[name]), name
    for name in ("old_log_probs", "advantages", "old_values", "targets"):
        np.testing.assert_array_equal(grads[name], 0.0, err_msg=name)
    # The entropy bonus is subtracted: the loss decreases as entropy grows.
    np.testing.assert_allclose(grads["entropies"], -0.01 / 12, rtol=1e-6)

    a2c_inputs = _a2c_inputs(x)
    grads = jax.grad(lambda inputs: losses.a2c_loss(
        **inputs, value_coef=0.5, entropy_coef=0.01)[0])(a2c_inputs)
    for name in ("log_probs", "values", "entropies"):
        assert _nonzero(grads[name]), name
    for name in ("advantages", "targets"):
        np.testing.assert_array_equal(grads[name], 0.0, err_msg=name)


# ----------------------------------------------------------------------------
# Totals, traced hyperparameters, shapes and errors
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("value_clip_eps", [None, 0.3])
def test_totals_are_weighted_sums_of_parts(value_clip_eps):
    x = _all_inputs(seed=1)
    vc, ec = 0.7, 0.05
    pg, pg_m = losses.ppo_clip_loss(x["log_probs"], x["old_log_probs"], x["advantages"],
                                    clip_eps=0.2)
    if value_clip_eps is None:
        vf, vf_m = losses.value_loss(x["values"], x["targets"])
    else:
        vf, vf_m = losses.value_loss(x["values"], x["targets"], x["old_values"],
                                     clip_eps=value_clip_eps)
    ent, ent_m = losses.entropy_bonus(x["entropies"])
    total, metrics = losses.ppo_loss(**x, clip_eps=0.2, value_coef=vc, entropy_coef=ec,
                                     value_clip_eps=value_clip_eps)
    _assert_close("ppo total = sum", total, pg + vc * vf - ec * ent)
    for name, value in {**pg_m, **vf_m, **ent_m}.items():
        _assert_close("ppo total metrics", metrics[name], value)
    _assert_close("ppo total metrics", metrics["ppo_loss"], total)

    pg, _ = losses.policy_gradient_loss(x["log_probs"], x["advantages"])
    vf, _ = losses.value_loss(x["values"], x["targets"])
    total, metrics = losses.a2c_loss(**_a2c_inputs(x), value_coef=vc, entropy_coef=ec)
    _assert_close("a2c total = sum", total, pg + vc * vf - ec * ent)
    _assert_close("a2c total metrics", metrics["pg_loss"], pg)
    _assert_close("a2c total metrics", metrics["value_loss"], vf)
    _assert_close("a2c total metrics", metrics["entropy_mean"], ent)


def test_clip_eps_traced_under_vmap_and_jit():
    x = _all_inputs(seed=2)
    eps_values = [0.05, 0.1, 0.2, 0.4]

    def ppo_clip(eps):
        return losses.ppo_clip_loss(x["log_probs"], x["old_log_probs"], x["advantages"],
                                    clip_eps=eps)

    swept_loss, swept_metrics = jax.jit(jax.vmap(ppo_clip))(f32(eps_values))
    assert swept_loss.shape == (4,) and swept_metrics["clip_fraction"].shape == (4,)
    for i, eps in enumerate(eps_values):
        loss, metrics = ppo_clip(eps)
        _assert_close("vmap clip_eps", swept_loss[i], loss)
        _assert_close("vmap clip_eps", swept_metrics["clip_fraction"][i], metrics["clip_fraction"])
    # Fewer samples are clipped as ε grows.
    assert np.all(np.diff(np.asarray(swept_metrics["clip_fraction"])) <= 0)

    def total(eps, value_eps, vc, ec):
        return losses.ppo_loss(**x, clip_eps=eps, value_coef=vc, entropy_coef=ec,
                               value_clip_eps=value_eps)[0]

    coefs = f32([0.5, 1.0, 0.25, 0.0])
    swept = jax.jit(jax.vmap(total))(f32(eps_values), f32(eps_values[::-1]), coefs, coefs / 10)
    for i, eps in enumerate(eps_values):
        expected = total(eps, eps_values[::-1][i], float(coefs[i]), float(coefs[i]) / 10)
        _assert_close("vmap ppo_loss hyperparameters", swept[i], expected)

    def a2c(vc, ec):
        return losses.a2c_loss(**_a2c_inputs(x), value_coef=vc, entropy_coef=ec)[0]

    swept = jax.vmap(a2c)(coefs, coefs / 10)
    for i in range(4):
        _assert_close("vmap a2c_loss hyperparameters", swept[i],
                      a2c(float(coefs[i]), float(coefs[i]) / 10))


def test_losses_accept_any_batch_shape():
    for shape in [(2, 3, 2)]:
        x = _all_inputs(seed=3, shape=shape)
        flat = {k: v.reshape(-1) for k, v in x.items()}
        for fn in (
            jax.jit(lambda d: losses.ppo_loss(**d, clip_eps=0.2, value_coef=0.5,
                                              entropy_coef=0.01, value_clip_eps=0.2)),
            jax.jit(lambda d: losses.a2c_loss(**_a2c_inputs(d), value_coef=0.5,
                                              entropy_coef=0.01)),
        ):
            loss, metrics = fn(x)
            assert loss.shape == () and _is_scalar_dict(metrics)
            _assert_close("batch shape invariance", loss, fn(flat)[0])


def test_value_loss_half_specified_clipping_raises():
    v = f32([1.0, 2.0])
    with pytest.raises(ValueError, match=r"old_values.*clip_eps.*pass both"):
        losses.value_loss(v, v, old_values=v)
    with pytest.raises(ValueError, match=r"clip_eps.*old_values.*pass both"):
        losses.value_loss(v, v, clip_eps=0.2)


def test_shape_errors_name_every_argument_and_its_shape():
    with pytest.raises(ValueError, match=r"log_probs \(5,\), old_log_probs \(5,\), "
                                         r"advantages \(6,\)"):
        losses.ppo_clip_loss(jnp.zeros(5), jnp.zeros(5), jnp.zeros(6), clip_eps=0.2)
    with pytest.raises(ValueError, match=r"policy_gradient_loss: .*log_probs \(3,\), "
                                         r"advantages \(4,\)"):
        losses.policy_gradient_loss(jnp.zeros((3,)), jnp.zeros((4,)))
    with pytest.raises(ValueError, match=r"log_probs \(2, 3\), old_log_probs \(3,\)"):
        losses.ppo_clip_loss(jnp.zeros((2, 3)), jnp.zeros((3,)), jnp.zeros((2, 3)), clip_eps=0.2)
    with pytest.raises(ValueError, match=r"ppo_loss: .*entropies \(4,\)"):
        losses.ppo_loss(**_all_inputs(shape=(3,)) | {"entropies": jnp.zeros(4)}, clip_eps=0.2,
                        value_coef=0.5, entropy_coef=0.01)
    with pytest.raises(ValueError, match=r"value_loss: .*old_values \(2,\)"):
        losses.value_loss(jnp.zeros(3), jnp.zeros(3), jnp.zeros(2), clip_eps=0.2)
    with pytest.raises(ValueError, match=r"clip_eps must be a scalar, got shape \(2,\)"):
        losses.ppo_clip_loss(jnp.zeros((3,)), jnp.zeros((3,)), jnp.zeros((3,)),
                             clip_eps=jnp.ones((2,)))
    with pytest.raises(ValueError, match=r"weights has shape \(4,\).*batch shape \(3,\)"):
        losses.entropy_bonus(jnp.zeros(3), weights=jnp.ones(4))


def test_dtype_errors_name_the_argument_and_the_cast():
    with pytest.raises(TypeError, match=r"value_loss: targets has dtype int32; .*"
                                        r"targets\.astype\(jnp\.float32\)"):
        losses.value_loss(jnp.zeros((3,)), jnp.zeros((3,), jnp.int32))
    with pytest.raises(TypeError, match=r"ppo_loss: old_log_probs has dtype int32"):
        losses.ppo_loss(**_all_inputs(shape=(3,)) | {"old_log_probs": jnp.zeros(3, jnp.int32)},
                        clip_eps=0.2, value_coef=0.5, entropy_coef=0.01)
    with pytest.raises(TypeError, match=r"normalize_advantages: advantages has dtype bool"):
        losses.normalize_advantages(jnp.zeros(3, bool))


def test_normalize_advantages_over_shards_uses_the_global_moments():
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 8)) * 2.0 + 1.0
    sharded = jax.vmap(lambda s: losses.normalize_advantages(s, axis_name="d"), axis_name="d")(x)
    _assert_close("sharded", sharded.reshape(-1), losses.normalize_advantages(x.reshape(-1)),
                  tol=1e-5)


# ----------------------------------------------------------------------------
# The library contract: keywords, dtypes, errors, weights and reductions
# ----------------------------------------------------------------------------

VC, EC = 0.5, 0.01
ARRAY_NAMES = ("log_probs", "old_log_probs", "advantages", "values", "old_values", "targets",
               "entropies")


def _np_clip(x, eps=0.2):
    r = np.exp(x["log_probs"] - x["old_log_probs"])
    a = x["advantages"]
    return -np.minimum(r * a, np.clip(r, 1 - eps, 1 + eps) * a)


def _np_value(x, eps=None):
    sq = (x["values"] - x["targets"]) ** 2
    if eps is not None:
        clipped = x["old_values"] + np.clip(x["values"] - x["old_values"], -eps, eps)
        sq = np.maximum(sq, (clipped - x["targets"]) ** 2)
    return 0.5 * sq


# name -> (call(x, **kw) -> (loss, metrics), numpy per-sample loss of x, the loss's metric).
CASES = {
    "policy_gradient_loss": (
        lambda x, **kw: losses.policy_gradient_loss(x["log_probs"], x["advantages"], **kw),
        lambda x: -x["advantages"] * x["log_probs"], "pg_loss"),
    "ppo_clip_loss": (
        lambda x, **kw: losses.ppo_clip_loss(x["log_probs"], x["old_log_probs"],
                                             x["advantages"], clip_eps=0.2, **kw),
        _np_clip, "clip_loss"),
    "value_loss": (
        lambda x, **kw: losses.value_loss(x["values"], x["targets"], **kw),
        _np_value, "value_loss"),
    "value_loss_clipped": (
        lambda x, **kw: losses.value_loss(x["values"], x["targets"], x["old_values"],
                                          clip_eps=0.3, **kw),
        lambda x: _np_value(x, 0.3), "value_loss"),
    "entropy_bonus": (
        lambda x, **kw: losses.entropy_bonus(x["entropies"], **kw),
        lambda x: x["entropies"], "entropy_mean"),
    "a2c_loss": (
        lambda x, **kw: losses.a2c_loss(**_a2c_inputs(x), value_coef=VC, entropy_coef=EC, **kw),
        lambda x: -x["advantages"] * x["log_probs"] + VC * _np_value(x) - EC * x["entropies"],
        "a2c_loss"),
    "ppo_loss": (
        lambda x, **kw: losses.ppo_loss(**x, clip_eps=0.2, value_coef=VC, entropy_coef=EC,
                                        value_clip_eps=0.3, **kw),
        lambda x: _np_clip(x) + VC * _np_value(x, 0.3) - EC * x["entropies"], "ppo_loss"),
}


def _np_inputs(seed=0, shape=(4, 5)):
    rng = np.random.default_rng(seed)
    x = {name: rng.normal(size=shape) for name in ARRAY_NAMES}
    x["log_probs"] = x["old_log_probs"] + 0.5 * x["log_probs"]
    x["values"] = x["old_values"] + 0.5 * x["values"]
    return x


def _as(x, dtype=jnp.float32):
    return {k: jnp.asarray(v, dtype) for k, v in x.items()}


def _assert_metrics_close(name, got, expected, tol=1e-6):
    assert set(got) == set(expected), (name, set(got) ^ set(expected))
    for key in expected:
        _assert_close(f"{name} {key}", got[key], expected[key], tol)


def test_ppo_loss_without_old_values_equals_explicit_old_values():
    x = _all_inputs(seed=4)
    kwargs = dict(clip_eps=0.2, value_coef=0.5, entropy_coef=0.01)
    without = {k: v for k, v in x.items() if k != "old_values"}
    loss, metrics = losses.ppo_loss(**without, **kwargs)
    loss_old, metrics_old = losses.ppo_loss(**x, **kwargs)
    np.testing.assert_array_equal(loss, loss_old)
    assert set(metrics) == set(metrics_old)
    for key in metrics:
        np.testing.assert_array_equal(metrics[key], metrics_old[key], err_msg=key)
    loss_none, _ = losses.ppo_loss(**without, old_values=None, **kwargs)
    np.testing.assert_array_equal(loss_none, loss_old)
    # Gradients too, and under jit.
    grad = jax.jit(jax.grad(lambda d: losses.ppo_loss(**d, **kwargs)[0]))(without)
    grad_old = jax.jit(jax.grad(lambda d: losses.ppo_loss(**d, **kwargs)[0]))(x)
    for key in without:
        np.testing.assert_array_equal(grad[key], grad_old[key], err_msg=key)
    with pytest.raises(ValueError, match=r"value_clip_eps.*old_values"):
        losses.ppo_loss(**without, value_clip_eps=0.2, **kwargs)


@pytest.mark.parametrize("name", sorted(CASES))
def test_numpy_float64_inputs_give_float32_without_warning(name):
    assert not jax.config.jax_enable_x64
    call, _, _ = CASES[name]
    x = _np_inputs()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, metrics = call(x)
        expected, expected_metrics = call(_as(x))
    assert loss.dtype == jnp.float32
    assert all(v.dtype == jnp.float32 for v in metrics.values())
    _assert_close(f"{name} float64", loss, expected)
    _assert_metrics_close(f"{name} float64", metrics, expected_metrics)


def test_normalize_advantages_numpy_float64_without_warning():
    x = _np_inputs()["advantages"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = losses.normalize_advantages(x, eps=np.float64(1e-8))
        weighted = losses.normalize_advantages(x, weights=np.ones(x.shape))
    assert got.dtype == weighted.dtype == jnp.float32
    _assert_close("normalize float64", got, (x - x.mean()) / (x.std() + 1e-8), 1e-5)


@pytest.mark.parametrize("kwargs", [
    {"clip_eps": -0.2}, {"clip_eps": 0.0}, {"value_clip_eps": -0.1}, {"value_coef": -0.5},
    {"entropy_coef": -0.01}, {"clip_eps": float("nan")}])
def test_out_of_range_hyperparameters_raise_naming_them(kwargs):
    (name,) = kwargs
    x = _all_inputs(shape=(3,))
    full = dict(clip_eps=0.2, value_coef=0.5, entropy_coef=0.01, value_clip_eps=0.2) | kwargs
    with pytest.raises(ValueError, match=rf"ppo_loss: {name}="):
        losses.ppo_loss(**x, **full)


def test_bad_clip_eps_and_eps_raise_naming_them():
    x = _all_inputs(shape=(3,))
    with pytest.raises(ValueError, match=r"ppo_clip_loss: clip_eps=-0\.2 must lie in \(0\.0"):
        losses.ppo_clip_loss(x["log_probs"], x["old_log_probs"], x["advantages"], clip_eps=-0.2)
    with pytest.raises(ValueError, match=r"value_loss: clip_eps=-0\.2"):
        losses.value_loss(x["values"], x["targets"], x["old_values"], clip_eps=-0.2)
    with pytest.raises(ValueError, match=r"a2c_loss: value_coef=-1\.0"):
        losses.a2c_loss(**_a2c_inputs(x), value_coef=-1.0, entropy_coef=0.0)
    with pytest.raises(ValueError, match=r"normalize_advantages: eps=0\.0"):
        losses.normalize_advantages(x["advantages"], eps=0.0)
    with pytest.raises(ValueError, match=r"reduction='avg'"):
        losses.entropy_bonus(x["entropies"], reduction="avg")
    # Traced hyperparameters pass unchecked.
    jax.jit(lambda e: losses.ppo_clip_loss(x["log_probs"], x["old_log_probs"],
                                           x["advantages"], clip_eps=e))(f32(-0.2))


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("shape", [(0,), (3, 0)])
def test_empty_batch_raises(name, shape):
    call, _, _ = CASES[name]
    with pytest.raises(ValueError, match=re.escape(f"{shape}, no element; pass a non-empty")):
        call(_as(_np_inputs(shape=shape)))


def test_normalize_advantages_empty_batch_raises():
    with pytest.raises(ValueError, match="no element"):
        losses.normalize_advantages(jnp.zeros((0,)))


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dtypes", [
    (jnp.bfloat16, jnp.float32, jnp.float32), (jnp.float16, jnp.float32, jnp.float32),
    (jnp.float16, jnp.float16, jnp.float16), (jnp.bfloat16, jnp.bfloat16, jnp.bfloat16),
    (jnp.float32, jnp.bfloat16, jnp.float32), (jnp.bfloat16, jnp.float16, jnp.float32)],
    ids=["bf16+f32", "f16+f32", "f16", "bf16", "f32+bf16", "bf16+f16"])
def test_mixed_dtypes_promote_the_loss_and_metrics_are_float32(name, dtypes):
    first, rest, expected = dtypes
    if name == "entropy_bonus":  # one array: its own dtype
        expected = first
    call, _, _ = CASES[name]
    x = _np_inputs()
    mixed = {k: jnp.asarray(v, first if k in ("log_probs", "values", "entropies") else rest)
             for k, v in x.items()}
    loss, metrics = call(mixed)
    assert loss.dtype == expected, (loss.dtype, expected)
    for key, value in metrics.items():
        assert value.dtype == jnp.float32, (key, value.dtype)
    _assert_close(f"{name} {first.dtype.name}+{rest.dtype.name}", loss, call(_as(x))[0], 0.1)


def test_keyword_only_hyperparameters_and_totals():
    x = _all_inputs(shape=(3,))
    lp, olp, adv = x["log_probs"], x["old_log_probs"], x["advantages"]
    with pytest.raises(TypeError):
        losses.ppo_clip_loss(lp, olp, adv, 0.2)
    with pytest.raises(TypeError):
        losses.value_loss(x["values"], x["targets"], x["old_values"], 0.2)
    with pytest.raises(TypeError):
        losses.normalize_advantages(adv, 1e-8)
    with pytest.raises(TypeError):
        losses.policy_gradient_loss(lp, adv, None)
    with pytest.raises(TypeError):
        losses.ppo_loss(lp, olp, adv, x["values"], x["old_values"], x["targets"],
                        x["entropies"], clip_eps=0.2, value_coef=0.5, entropy_coef=0.01)
    with pytest.raises(TypeError):
        losses.a2c_loss(lp, adv, x["values"], x["targets"], x["entropies"], value_coef=0.5,
                        entropy_coef=0.01)


@pytest.mark.parametrize("name", sorted(CASES))
def test_weights_of_ones_change_nothing(name):
    call, _, _ = CASES[name]
    x = _as(_np_inputs())
    loss, metrics = call(x)
    for weights in (jnp.ones((4, 5)), jnp.ones((4, 1)), np.ones(5), 1.0):
        got, got_metrics = call(x, weights=weights)
        _assert_close(f"{name} ones", got, loss)
        _assert_metrics_close(f"{name} ones", got_metrics, metrics)


@pytest.mark.parametrize("name", sorted(CASES))
def test_zero_weights_remove_their_samples(name):
    call, _, _ = CASES[name]
    x = _np_inputs(seed=1)
    keep = np.random.default_rng(2).random((4, 5)) < 0.6
    assert 0 < keep.sum() < keep.size
    loss, metrics = call(_as(x), weights=keep.astype(np.float32))
    kept, kept_metrics = call(_as({k: v[keep] for k, v in x.items()}))
    _assert_close(f"{name} mask", loss, kept, 1e-5)
    _assert_metrics_close(f"{name} mask", metrics, kept_metrics, 1e-5)
    # Bool weights and a mask over whole rows (broadcast) work alike.
    _assert_close(f"{name} bool mask", call(_as(x), weights=keep)[0], kept, 1e-5)
    rows = np.array([True, False, True, True])
    row_loss = call(_as(x), weights=rows[:, None])[0]
    _assert_close(f"{name} row mask", row_loss, call(_as({k: v[rows] for k, v in x.items()}))[0],
                  1e-5)


@pytest.mark.parametrize("name", sorted(CASES))
def test_reductions_match_numpy(name):
    call, per_sample, metric = CASES[name]
    x = _np_inputs(seed=3)
    w = np.random.default_rng(4).uniform(0.5, 2.0, size=(4, 5))
    expected = per_sample(x)
    none, metrics = call(_as(x), weights=w, reduction="none")
    assert none.shape == (4, 5)
    _assert_close(f"{name} none", none, w * expected, 1e-5)
    total, sum_metrics = call(_as(x), weights=w, reduction="sum")
    _assert_close(f"{name} sum", total, np.sum(w * expected), 1e-4)
    mean, mean_metrics = call(_as(x), weights=w)
    _assert_close(f"{name} mean", mean, np.sum(w * expected) / np.sum(w), 1e-5)
    # Metrics are weighted means whatever the reduction.
    for m in (metrics, sum_metrics):
        _assert_metrics_close(f"{name} metrics", m, mean_metrics, 1e-5)
    _assert_close(f"{name} metric", mean_metrics[metric], mean, 1e-6)
    # Unweighted "sum" and "none".
    _assert_close(f"{name} none unweighted", call(_as(x), reduction="none")[0], expected, 1e-5)
    _assert_close(f"{name} sum unweighted", call(_as(x), reduction="sum")[0], expected.sum(),
                  1e-4)
    # Weights summing to zero give a zero mean, not NaN.
    zero, zero_metrics = call(_as(x), weights=np.zeros((4, 5)))
    assert float(zero) == 0.0
    assert all(np.isfinite(v) for v in zero_metrics.values())


def test_weighted_explained_variance_against_numpy():
    x = _np_inputs(seed=5)
    w = np.random.default_rng(6).uniform(0.0, 2.0, size=(4, 5))

    def var(a):
        mean = np.sum(w * a) / np.sum(w)
        return np.sum(w * (a - mean) ** 2) / np.sum(w)

    expected = 1.0 - var(x["targets"] - x["values"]) / var(x["targets"])
    _, metrics = losses.value_loss(f32(x["values"]), f32(x["targets"]), weights=w)
    _assert_close("weighted explained variance", metrics["value_explained_variance"], expected,
                  1e-5)


def test_normalize_advantages_with_weights():
    x = _np_inputs(seed=7)["advantages"] * 3.0 + 1.0
    plain = losses.normalize_advantages(f32(x))
    _assert_close("normalize ones", losses.normalize_advantages(f32(x), weights=np.ones(x.shape)),
                  plain, 1e-6)
    keep = np.random.default_rng(8).random(x.shape) < 0.5
    got = losses.normalize_advantages(f32(x), weights=keep)
    mean, std = x[keep].mean(), x[keep].std()
    # Every sample is standardised with the kept samples' moments.
    _assert_close("normalize mask", got, (x - mean) / (std + 1e-8), 1e-5)
    _assert_close("normalize mask kept", np.asarray(got)[keep],
                  losses.normalize_advantages(f32(x[keep])), 1e-5)
    np.testing.assert_array_equal(
        losses.normalize_advantages(f32(x), weights=np.zeros(x.shape)), f32(x))
    # Over shards: the global weighted moments.
    sharded = jax.vmap(lambda a, w: losses.normalize_advantages(a, weights=w, axis_name="d"),
                       axis_name="d")(f32(x), f32(keep))
    _assert_close("normalize mask sharded", sharded, got, 1e-5)
