"""`visit_count_policy` and `alphazero_loss` against hand computations and numpy."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acjax.core.search_losses import alphazero_loss, visit_count_policy


def test_temperature_one_is_proportional_to_the_visits():
    np.testing.assert_allclose(visit_count_policy(np.array([1, 3, 0, 4]), temperature=1.0),
                               [1 / 8, 3 / 8, 0, 4 / 8], rtol=1e-6)


def test_temperature_one_half_squares_the_visits():
    np.testing.assert_allclose(visit_count_policy(np.array([1, 3, 0, 4]), temperature=0.5),
                               [1 / 26, 9 / 26, 0, 16 / 26], rtol=1e-6)


@pytest.mark.parametrize("tau", [0.0, 1e-3, 1e-6])
def test_temperature_to_zero_picks_the_most_visited_and_splits_ties(tau):
    np.testing.assert_allclose(visit_count_policy(np.array([1, 3, 0, 4]), temperature=tau),
                               [0, 0, 0, 1], atol=1e-6)
    np.testing.assert_allclose(visit_count_policy(np.array([5, 2, 5, 0]), temperature=tau),
                               [0.5, 0, 0.5, 0], atol=1e-6)


def test_large_counts_and_small_temperatures_stay_finite():
    out = visit_count_policy(np.array([1e5, 1e5 - 100, 3.0]), temperature=0.01)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(np.sum(out), 1.0, rtol=1e-6)
    assert out[0] > out[1] > out[2]


def test_illegal_actions_get_nothing_and_unvisited_states_are_uniform_over_legal_ones():
    legal = np.array([[True, False, True, True], [False, True, True, False]])
    counts = np.array([[2, 50, 2, 0], [0, 0, 0, 7]])
    out = visit_count_policy(counts, legal, temperature=1.0)
    np.testing.assert_allclose(out, [[0.5, 0, 0.5, 0], [0, 0.5, 0.5, 0]], atol=1e-7)


def test_traced_temperature_under_jit_and_vmap_matches_each_row():
    counts = np.array([[1, 2, 3], [4, 0, 4]], np.int32)
    taus = jnp.array([1.0, 0.0])
    out = jax.jit(jax.vmap(lambda c, t: visit_count_policy(c, temperature=t)))(counts, taus)
    np.testing.assert_allclose(out, [[1 / 6, 2 / 6, 3 / 6], [0.5, 0, 0.5]], rtol=1e-6)


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(visit_counts=np.array([1, -1]), temperature=1.0), "negative"),
    (dict(visit_counts=np.array([1, 2]), temperature=-1.0), "temperature=-1.0 must lie in"),
    (dict(visit_counts=np.array([1, 2]), legal_actions=np.ones(3, bool), temperature=1.0),
     "legal_actions has shape"),
    (dict(visit_counts=np.array([1, 2]), legal_actions=np.ones(2), temperature=1.0),
     "bool mask"),
])
def test_bad_inputs_are_refused_naming_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        visit_count_policy(**kwargs)


def _hand():
    logits = np.array([[0.0, math.log(2.0), 0.0]], np.float32)  # p = 1/4, 1/2, 1/4
    target = np.array([[0.25, 0.5, 0.25]], np.float32)
    return logits, target


def test_loss_against_a_hand_computation():
    logits, target = _hand()
    loss, metrics = alphazero_loss(policy_logits=logits, values=np.array([0.5], np.float32),
                                   target_policies=target, target_values=np.array([1.0]),
                                   value_coef=2.0)
    cross = -(0.25 * math.log(0.25) + 0.5 * math.log(0.5) + 0.25 * math.log(0.25))
    np.testing.assert_allclose(loss, cross + 2.0 * 0.25, rtol=1e-6)
    np.testing.assert_allclose(metrics["alphazero_policy_loss"], cross, rtol=1e-6)
    np.testing.assert_allclose(metrics["alphazero_value_loss"], 0.25, rtol=1e-6)
    np.testing.assert_allclose(metrics["alphazero_policy_entropy"], cross, rtol=1e-6)
    assert float(metrics["alphazero_policy_accuracy"]) == 1.0
    assert all(name.startswith("alphazero_") for name in metrics)


def test_masked_logits_do_not_change_the_loss_and_get_no_gradient():
    logits, target = _hand()
    wide = np.concatenate([logits, [[100.0]]], axis=1)  # an illegal action with a huge logit
    legal = np.array([[True, True, True, False]])
    target4 = np.concatenate([target, [[0.0]]], axis=1)

    def loss(lg):
        return alphazero_loss(policy_logits=lg, values=jnp.zeros(1), target_policies=target4,
                              target_values=jnp.zeros(1), legal_actions=legal)[0]

    plain = alphazero_loss(policy_logits=logits, values=np.zeros(1), target_policies=target,
                           target_values=np.zeros(1))[0]
    np.testing.assert_allclose(loss(wide), plain, rtol=1e-6)
    grad = jax.grad(loss)(jnp.asarray(wide))
    assert np.all(np.isfinite(grad)) and float(grad[0, 3]) == 0.0


def test_weights_and_reductions_follow_the_contract():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 4)).astype(np.float32)
    target = rng.dirichlet(np.ones(4), size=5).astype(np.float32)
    v, z = rng.normal(size=5).astype(np.float32), rng.normal(size=5).astype(np.float32)
    kw = dict(policy_logits=logits, values=v, target_policies=target, target_values=z)
    per = alphazero_loss(**kw, reduction="none")[0]
    np.testing.assert_allclose(alphazero_loss(**kw)[0], np.mean(per), rtol=1e-6)
    np.testing.assert_allclose(alphazero_loss(**kw, reduction="sum")[0], np.sum(per), rtol=1e-6)
    np.testing.assert_allclose(alphazero_loss(**kw, weights=np.ones(5))[0], np.mean(per),
                               rtol=1e-6)
    w = np.array([1, 1, 0, 1, 1], np.float32)
    np.testing.assert_allclose(alphazero_loss(**kw, weights=w)[0],
                               np.sum(per * w) / 4, rtol=1e-6)


def test_loss_shape_errors_name_the_arguments():
    logits, target = _hand()
    with pytest.raises(ValueError, match="values"):
        alphazero_loss(policy_logits=logits, values=np.zeros(3), target_policies=target,
                       target_values=np.zeros(3))
    with pytest.raises(ValueError, match="target_policies"):
        alphazero_loss(policy_logits=logits, values=np.zeros(1), target_policies=target[:, :2],
                       target_values=np.zeros(1))
    with pytest.raises(ValueError, match="value_coef"):
        alphazero_loss(policy_logits=logits, values=np.zeros(1), target_policies=target,
                       target_values=np.zeros(1), value_coef=-1.0)
