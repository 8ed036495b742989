"""Tests for `acjax.returns`."""

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rlax
from closeness import assert_close, call_variant, report_errors  # noqa: F401 - report_errors: a fixture
from hypothesis import given, settings
from hypothesis import strategies as st

from acjax import returns

TOL = 1e-5
VARIANTS = ("plain", "jit", "vmap")
# (T, trailing batch shape): covers every length in {1, 7, 33} and every batch
# shape in {(), (3,), (2, 4)} without paying for the full product of compilations.
SHAPES = [(1, (2, 4)), (7, ()), (7, (3,)), (33, (3,)), (33, (2, 4))]
SEEDS = (0, 1, 2)

def _assert_close(name, actual, expected, tol=TOL):
    assert_close(name, actual, expected, tol)


_call = call_variant


# ----------------------------------------------------------------------------
# Slow references: float64, plain Python loops over one `[T]` sequence.
# ----------------------------------------------------------------------------


def _ref_td_errors(r, v, nv, term, gamma):
    return [r[t] + gamma * (1 - term[t]) * nv[t] - v[t] for t in range(len(r))]


def _ref_gae(r, v, nv, term, trunc, gamma, lam):
    # Forward view: A_t = sum_k (gamma lam)^k delta_{t+k}, stopping after the first done step.
    deltas = _ref_td_errors(r, v, nv, term, gamma)
    seq_len = len(r)
    adv = []
    for t in range(seq_len):
        acc, coef = 0.0, 1.0
        for j in range(t, seq_len):
            acc += coef * deltas[j]
            if term[j] or trunc[j]:
                break
            coef *= gamma * lam
        adv.append(acc)
    return adv, [a + v[t] for t, a in enumerate(adv)]


def _ref_discounted_returns(r, nv, term, trunc, gamma):
    seq_len = len(r)
    out = [0.0] * seq_len
    for t in reversed(range(seq_len)):
        if term[t] or trunc[t] or t == seq_len - 1:
            future = nv[t]
        else:
            future = out[t + 1]
        out[t] = r[t] + gamma * (1 - term[t]) * future
    return out


def _ref_n_step_returns(r, nv, term, trunc, gamma, n):
    seq_len = len(r)
    out = []
    for t in range(seq_len):
        acc, disc = 0.0, 1.0
        for k in range(n):
            j = t + k
            acc += disc * r[j]
            disc *= gamma
            if term[j] or trunc[j] or j == seq_len - 1 or k == n - 1:
                acc += disc * (1 - term[j]) * nv[j]
                break
        out.append(acc)
    return out


def _per_column(ref, *arrays, **kwargs):
    """Applies a `[T]` reference to every trailing-batch column of `[T, ...]` arrays."""
    shape = np.shape(arrays[0])
    cols = [np.asarray(a, np.float64).reshape(shape[0], -1) for a in arrays]
    results = [ref(*(c[:, b].tolist() for c in cols), **kwargs) for b in range(cols[0].shape[1])]
    if isinstance(results[0], tuple):
        return tuple(np.array(parts).T.reshape(shape) for parts in zip(*results))
    return np.array(results).T.reshape(shape)


def _rollout(seed, seq_len, batch_shape=(), p_term=0.15, p_trunc=0.15, consistent=False):
    """Random float32 rollout with boolean flags.

    With `consistent=True`, `next_values[t] = values[t + 1]` for every step that
    is neither done nor the last one, as in a real rollout.
    """
    rng = np.random.default_rng(seed)
    shape = (seq_len,) + tuple(batch_shape)
    rewards = rng.normal(size=shape).astype(np.float32)
    values = rng.normal(size=shape).astype(np.float32)
    next_values = rng.normal(size=shape).astype(np.float32)
    terminated = rng.random(shape) < p_term
    truncated = rng.random(shape) < p_trunc
    if consistent:
        done = terminated | truncated
        next_values[:-1] = np.where(done[:-1], next_values[:-1], values[1:])
    return rewards, values, next_values, terminated, truncated


# ----------------------------------------------------------------------------
# Hand-computed example, gamma = 0.5, gae_lambda = 0.5.
#
#   step t        0    1    2    3    4    5    6    7
#   rewards       1    2    3    4    5    6    7    8
#   values        2    4    6    8   10   12   14   16
#   next_values   4    6  100   10   20  200   16   32
#   terminated    .    .    X    .    .    X    .    .
#   truncated     .    .    .    .    X    X    .    .
#
# Step 2 terminates, step 4 is cut by a time limit (its final observation is
# worth 20, not values[5] = 12), step 5 is both, and step 7 ends the rollout.
# Values after termination (100, 200) must never be used.
# ----------------------------------------------------------------------------

GAMMA, LAMBDA = 0.5, 0.5
REWARDS = np.array([1, 2, 3, 4, 5, 6, 7, 8], np.float32)
VALUES = np.array([2, 4, 6, 8, 10, 12, 14, 16], np.float32)
NEXT_VALUES = np.array([4, 6, 100, 10, 20, 200, 16, 32], np.float32)
TERMINATED = np.array([0, 0, 1, 0, 0, 1, 0, 0], bool)
TRUNCATED = np.array([0, 0, 0, 0, 1, 1, 0, 0], bool)

# delta_t = r_t + 0.5 (1 - term_t) nv_t - v_t
#   t0: 1 + 0.5*4 - 2 = 1      t4: 5 + 0.5*20 - 10 = 5   (truncated: bootstraps)
#   t1: 2 + 0.5*6 - 4 = 1      t5: 6 + 0 - 12 = -6       (terminated and truncated)
#   t2: 3 + 0 - 6 = -3         t6: 7 + 0.5*16 - 14 = 1
#   t3: 4 + 0.5*10 - 8 = 1     t7: 8 + 0.5*32 - 16 = 8
EXPECTED_TD = [1.0, 1.0, -3.0, 1.0, 5.0, -6.0, 1.0, 8.0]

# A_t = delta_t + 0.25 (1 - done_t) A_{t+1}, done = [0, 0, 1, 0, 1, 1, 0, 0]
#   A7 = 8;  A6 = 1 + 0.25*8 = 3;  A5 = -6;  A4 = 5;  A3 = 1 + 0.25*5 = 2.25;
#   A2 = -3; A1 = 1 + 0.25*(-3) = 0.25;  A0 = 1 + 0.25*0.25 = 1.0625
EXPECTED_ADV = [1.0625, 0.25, -3.0, 2.25, 5.0, -6.0, 3.0, 8.0]
# targets = A + values
EXPECTED_TARGETS = [3.0625, 4.25, 3.0, 10.25, 15.0, 6.0, 17.0, 24.0]

# G7 = 8 + 0.5*32 = 24 (end of rollout);  G6 = 7 + 0.5*24 = 19;  G5 = 6 (terminated);
# G4 = 5 + 0.5*20 = 15 (truncated);  G3 = 4 + 0.5*15 = 11.5;  G2 = 3 (terminated);
# G1 = 2 + 0.5*3 = 3.5;  G0 = 1 + 0.5*3.5 = 2.75
EXPECTED_RETURNS = [2.75, 3.5, 3.0, 11.5, 15.0, 6.0, 19.0, 24.0]

# n = 1: r_t + 0.5 (1 - term_t) nv_t = delta_t + v_t
EXPECTED_N1 = [3.0, 5.0, 3.0, 9.0, 15.0, 6.0, 15.0, 24.0]
# n = 2: only windows of two steps inside one episode differ from n = 1:
#   t0: 1 + 0.5*2 + 0.25*nv1 = 1 + 1 + 1.5 = 3.5
#   t1: 2 + 0.5*3 + 0.25*0 (step 2 terminated) = 3.5
#   t3: 4 + 0.5*5 + 0.25*nv4 = 4 + 2.5 + 5 = 11.5 (step 4 truncated: bootstraps)
#   t6: 7 + 0.5*8 + 0.25*nv7 = 7 + 4 + 8 = 19
#   t2, t4, t5, t7 end their episode or the rollout after one step (as for n = 1).
EXPECTED_N2 = [3.5, 3.5, 3.0, 11.5, 15.0, 6.0, 19.0, 24.0]
# n = 3: t0: 1 + 0.5*2 + 0.25*3 + 0 (step 2 terminated) = 2.75; all others as n = 2.
EXPECTED_N3 = [2.75, 3.5, 3.0, 11.5, 15.0, 6.0, 19.0, 24.0]


def _hand_batch(variant):
    example = (REWARDS, VALUES, NEXT_VALUES, TERMINATED, TRUNCATED)
    return [example, example] if variant == "vmap" else [example]


@pytest.mark.parametrize("variant", VARIANTS)
def test_hand_example_td_errors(variant):
    batch = [(r, v, nv, te) for r, v, nv, te, _ in _hand_batch(variant)]
    for out in _call(variant, returns.td_errors, batch, gamma=GAMMA):
        _assert_close("hand/td_errors", out, EXPECTED_TD, tol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_hand_example_gae(variant):
    outs = _call(variant, returns.gae, _hand_batch(variant), gamma=GAMMA, gae_lambda=LAMBDA)
    for adv, targets in outs:
        _assert_close("hand/gae_advantages", adv, EXPECTED_ADV, tol=1e-6)
        _assert_close("hand/gae_targets", targets, EXPECTED_TARGETS, tol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_hand_example_discounted_returns(variant):
    batch = [(r, nv, te, tr) for r, _, nv, te, tr in _hand_batch(variant)]
    for out in _call(variant, returns.discounted_returns, batch, gamma=GAMMA):
        _assert_close("hand/discounted_returns", out, EXPECTED_RETURNS, tol=1e-6)
    # gae_lambda = 1 reproduces them because next_values[t] = values[t+1] off episode ends.
    _, targets = returns.gae(REWARDS, VALUES, NEXT_VALUES, TERMINATED, TRUNCATED,
                             gamma=GAMMA, gae_lambda=1.0)
    _assert_close("hand/gae_lambda1", targets, EXPECTED_RETURNS, tol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    "n,expected",
    [(1, EXPECTED_N1), (2, EXPECTED_N2), (3, EXPECTED_N3), (100, EXPECTED_RETURNS)],
)
def test_hand_example_n_step_returns(variant, n, expected):
    batch = [(r, nv, te, tr) for r, _, nv, te, tr in _hand_batch(variant)]
    for out in _call(variant, returns.n_step_returns, batch, gamma=GAMMA, n=n):
        _assert_close("hand/n_step_returns", out, expected, tol=1e-6)


# ----------------------------------------------------------------------------
# Random rollouts against the slow references.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("seq_len,batch_shape", SHAPES)
def test_gae_matches_reference(variant, seq_len, batch_shape):
    rollouts = [_rollout(s, seq_len, batch_shape) for s in SEEDS]
    outs = _call(variant, returns.gae, rollouts, gamma=0.97, gae_lambda=0.9)
    for rollout, (adv, targets) in zip(rollouts, outs):
        ref_adv, ref_targets = _per_column(_ref_gae, *rollout, gamma=0.97, lam=0.9)
        _assert_close("ref/gae_advantages", adv, ref_adv)
        _assert_close("ref/gae_targets", targets, ref_targets)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("seq_len,batch_shape", SHAPES)
def test_td_errors_matches_reference(variant, seq_len, batch_shape):
    rollouts = [_rollout(s, seq_len, batch_shape)[:4] for s in SEEDS]
    outs = _call(variant, returns.td_errors, rollouts, gamma=0.97)
    for rollout, out in zip(rollouts, outs):
        _assert_close("ref/td_errors", out, _per_column(_ref_td_errors, *rollout, gamma=0.97))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("seq_len,batch_shape", SHAPES)
def test_discounted_returns_matches_reference(variant, seq_len, batch_shape):
    rollouts = [(r, nv, te, tr) for r, _, nv, te, tr in
                (_rollout(s, seq_len, batch_shape) for s in SEEDS)]
    outs = _call(variant, returns.discounted_returns, rollouts, gamma=0.97)
    for rollout, out in zip(rollouts, outs):
        expected = _per_column(_ref_discounted_returns, *rollout, gamma=0.97)
        _assert_close("ref/discounted_returns", out, expected)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    "seq_len,batch_shape,n",
    [(1, (2, 4), 3), (7, (), 3), (7, (3,), 1), (33, (2, 4), 5), (33, (3,), 40)],
)
def test_n_step_returns_matches_reference(variant, seq_len, batch_shape, n):
    rollouts = [(r, nv, te, tr) for r, _, nv, te, tr in
                (_rollout(s, seq_len, batch_shape) for s in SEEDS)]
    outs = _call(variant, returns.n_step_returns, rollouts, gamma=0.97, n=n)
    for rollout, out in zip(rollouts, outs):
        expected = _per_column(_ref_n_step_returns, *rollout, gamma=0.97, n=n)
        _assert_close("ref/n_step_returns", out, expected)


_gae_jit = jax.jit(returns.gae)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    seq_len=st.sampled_from([1, 2, 5, 16]),
    gamma=st.floats(0.0, 1.0),
    gae_lambda=st.floats(0.0, 1.0),
    p_term=st.floats(0.0, 0.6),
    p_trunc=st.floats(0.0, 0.6),
)
def test_gae_property_matches_reference(seed, seq_len, gamma, gae_lambda, p_term, p_trunc):
    rollout = _rollout(seed, seq_len, (2,), p_term=p_term, p_trunc=p_trunc)
    adv, targets = _gae_jit(*rollout, gamma=gamma, gae_lambda=gae_lambda)
    ref_adv, ref_targets = _per_column(_ref_gae, *rollout, gamma=gamma, lam=gae_lambda)
    _assert_close("hypothesis/gae_advantages", adv, ref_adv)
    _assert_close("hypothesis/gae_targets", targets, ref_targets)


# ----------------------------------------------------------------------------
# Cross-checks between the estimators.
# ----------------------------------------------------------------------------

CROSS_SHAPES = [(7, ()), (33, (2, 4))]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("seq_len,batch_shape", CROSS_SHAPES)
def test_gae_lambda_one_equals_discounted_returns(variant, seq_len, batch_shape):
    rollouts = [_rollout(s, seq_len, batch_shape, consistent=True) for s in SEEDS]
    outs = _call(variant, returns.gae, rollouts, gamma=0.95, gae_lambda=1.0)
    for (r, v, nv, te, tr), (adv, targets) in zip(rollouts, outs):
        expected = returns.discounted_returns(r, nv, te, tr, gamma=0.95)
        _assert_close("cross/gae1_targets_vs_returns", targets, expected)
        _assert_close("cross/gae1_adv_vs_returns_minus_values", adv, expected - v)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("seq_len,batch_shape", CROSS_SHAPES)
def test_gae_lambda_zero_equals_td_errors(variant, seq_len, batch_shape):
    rollouts = [_rollout(s, seq_len, batch_shape) for s in SEEDS]
    outs = _call(variant, returns.gae, rollouts, gamma=0.95, gae_lambda=0.0)
    for (r, v, nv, te, tr), (adv, targets) in zip(rollouts, outs):
        deltas = returns.td_errors(r, v, nv, te, gamma=0.95)
        _assert_close("cross/gae0_vs_td_errors", adv, deltas)
        one_step = returns.n_step_returns(r, nv, te, tr, gamma=0.95, n=1)
        _assert_close("cross/gae0_targets_vs_n1", targets, one_step)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("seq_len,batch_shape,extra", [(7, (), 0), (33, (2, 4), 5)])
def test_n_step_long_window_equals_discounted_returns(variant, seq_len, batch_shape, extra):
    rollouts = [(r, nv, te, tr) for r, _, nv, te, tr in
                (_rollout(s, seq_len, batch_shape) for s in SEEDS)]
    outs = _call(variant, returns.n_step_returns, rollouts, gamma=0.95, n=seq_len + extra)
    for rollout, out in zip(rollouts, outs):
        expected = returns.discounted_returns(*rollout, gamma=0.95)
        _assert_close("cross/n_ge_T_vs_returns", out, expected)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("seq_len,batch_shape", CROSS_SHAPES)
def test_n_step_one_equals_td_target(variant, seq_len, batch_shape):
    rollouts = [_rollout(s, seq_len, batch_shape) for s in SEEDS]
    batch = [(r, nv, te, tr) for r, _, nv, te, tr in rollouts]
    outs = _call(variant, returns.n_step_returns, batch, gamma=0.95, n=1)
    for (r, v, nv, te, _), out in zip(rollouts, outs):
        expected = r + 0.95 * (1.0 - te) * nv
        _assert_close("cross/n1_vs_td_target", out, expected)
        _assert_close("cross/n1_vs_td_errors", out - v, returns.td_errors(r, v, nv, te, gamma=0.95))


# ----------------------------------------------------------------------------
# Parity with rlax.
#
# rlax works on single `[T]` sequences with one discount per step; episode ends
# are encoded by `discount_t = 0` and there is no notion of truncation. Mapping
# `discount_t = gamma * (1 - terminated_t)`, the estimators coincide exactly when
# no step is truncated:
#   * GAE / TD(lambda) / lambda-returns: rlax bootstraps step t from values[t+1]
#     of a single `[T+1]` value sequence, so additionally next_values[t] must
#     equal values[t+1] for every non-terminated t < T-1; we pass
#     `values_rlax = concat(values, next_values[T-1])` (for td_lambda and
#     lambda_returns `v_t = next_values`, which is the same thing).
#   * discounted_returns: rlax only bootstraps from v_t[T-1] at the end of the
#     rollout, which is next_values[T-1]; any next_values agree.
#   * n_step_bootstrapped_returns: rlax's v_t[t] is the value of the state after
#     step t, i.e. next_values[t]; any next_values agree.
# With truncation they differ, by design (see the last test of this section).
# ----------------------------------------------------------------------------


@functools.cache
def _rlax_batched(fn, **kwargs):
    return jax.jit(jax.vmap(functools.partial(fn, **kwargs), in_axes=1, out_axes=1))


def _rlax_columns(fn, *arrays, out_shape, **kwargs):
    """Applies a `[T]` rlax function to every trailing-batch column."""
    flat = [np.reshape(a, (a.shape[0], -1)) for a in arrays]
    return _rlax_batched(fn, **kwargs)(*flat).reshape(out_shape)


def _rlax_gae(r_t, discount_t, values, lambda_):
    return rlax.truncated_generalized_advantage_estimation(r_t, discount_t, lambda_, values)


def _no_truncation_rollout(seed, seq_len, batch_shape):
    r, v, nv, te, tr = _rollout(seed, seq_len, batch_shape, p_trunc=0.0, consistent=True)
    assert not tr.any()
    return r, v, nv, te, tr


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("seq_len,batch_shape", CROSS_SHAPES)
def test_gae_matches_rlax_without_truncation(variant, seq_len, batch_shape):
    gamma, lam = 0.95, 0.8
    rollouts = [_no_truncation_rollout(s, seq_len, batch_shape) for s in SEEDS]
    outs = _call(variant, returns.gae, rollouts, gamma=gamma, gae_lambda=lam)
    for (r, v, nv, te, _), (adv, targets) in zip(rollouts, outs):
        discount = (gamma * (1.0 - te)).astype(np.float32)
        values_rlax = np.concatenate([v, nv[-1:]])
        rlax_adv = _rlax_columns(
            _rlax_gae, r, discount, values_rlax, out_shape=r.shape, lambda_=lam,
        )
        rlax_td_lambda = _rlax_columns(
            rlax.td_lambda, v, r, discount, nv, out_shape=r.shape, lambda_=lam,
        )
        rlax_targets = _rlax_columns(
            rlax.lambda_returns, r, discount, nv, out_shape=r.shape, lambda_=lam,
        )
        _assert_close("rlax/truncated_gae", adv, rlax_adv)
        _assert_close("rlax/td_lambda", adv, rlax_td_lambda)
        _assert_close("rlax/lambda_returns", targets, rlax_targets)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("seq_len,batch_shape", CROSS_SHAPES)
def test_discounted_returns_matches_rlax_without_truncation(variant, seq_len, batch_shape):
    gamma = 0.95
    # Arbitrary next_values: without truncation only next_values[T-1] is ever used.
    rollouts = [_rollout(s, seq_len, batch_shape, p_trunc=0.0) for s in SEEDS]
    batch = [(r, nv, te, tr) for r, _, nv, te, tr in rollouts]
    outs = _call(variant, returns.discounted_returns, batch, gamma=gamma)
    for (r, nv, te, _), out in zip(batch, outs):
        discount = (gamma * (1.0 - te)).astype(np.float32)
        expected = _rlax_columns(rlax.discounted_returns, r, discount, nv, out_shape=r.shape)
        _assert_close("rlax/discounted_returns", out, expected)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("n", (3, 40))
def test_n_step_returns_matches_rlax_without_truncation(variant, n):
    gamma = 0.95
    rollouts = [_rollout(s, 33, (2, 4), p_trunc=0.0) for s in SEEDS]
    batch = [(r, nv, te, tr) for r, _, nv, te, tr in rollouts]
    outs = _call(variant, returns.n_step_returns, batch, gamma=gamma, n=n)
    for (r, nv, te, _), out in zip(batch, outs):
        discount = (gamma * (1.0 - te)).astype(np.float32)
        expected = _rlax_columns(
            rlax.n_step_bootstrapped_returns, r, discount, nv, out_shape=r.shape, n=n,
        )
        _assert_close("rlax/n_step_bootstrapped_returns", out, expected)


def test_truncation_differs_from_rlax_done_as_termination():
    """On the hand example, folding the time limit into rlax's discount loses the bootstrap."""
    adv, _ = returns.gae(REWARDS, VALUES, NEXT_VALUES, TERMINATED, TRUNCATED,
                         gamma=GAMMA, gae_lambda=LAMBDA)
    done = TERMINATED | TRUNCATED
    values_rlax = np.concatenate([VALUES, NEXT_VALUES[-1:]])

    # (a) done as termination: the truncated step 4 does not bootstrap from its final
    # observation, so delta_4 drops by gamma * next_values[4] = 10 and A_3 by 0.25 * 10.
    naive = rlax.truncated_generalized_advantage_estimation(
        REWARDS, GAMMA * (1.0 - done.astype(np.float32)), LAMBDA, values_rlax
    )
    np.testing.assert_allclose(np.asarray(adv) - np.asarray(naive),
                               [0, 0, 0, 2.5, 10.0, 0, 0, 0], atol=1e-6)

    # (b) ignoring truncation: step 4 bootstraps from values[5] = 12, the first state of
    # the next episode, instead of 20: delta_4 drops by 0.5 * 8 = 4, and the trace leaks
    # through the boundary, adding 0.25 * A_5 = -1.5 from the next episode to A_4.
    leaky = rlax.truncated_generalized_advantage_estimation(
        REWARDS, GAMMA * (1.0 - TERMINATED.astype(np.float32)), LAMBDA, values_rlax
    )
    np.testing.assert_allclose(np.asarray(adv) - np.asarray(leaky),
                               [0, 0, 0, 1.375, 5.5, 0, 0, 0], atol=1e-6)

    # The same for returns: rlax gives G_4 = 5 and G_3 = 6.5 instead of 15 and 11.5.
    rlax_returns = rlax.discounted_returns(
        REWARDS, GAMMA * (1.0 - done.astype(np.float32)), NEXT_VALUES
    )
    ours = returns.discounted_returns(REWARDS, NEXT_VALUES, TERMINATED, TRUNCATED, gamma=GAMMA)
    np.testing.assert_allclose(np.asarray(ours) - np.asarray(rlax_returns),
                               [0, 0, 0, 5.0, 10.0, 0, 0, 0], atol=1e-6)


# ----------------------------------------------------------------------------
# Traced hyperparameters.
# ----------------------------------------------------------------------------

GAMMAS = np.array([0.0, 0.5, 0.9, 0.99], np.float32)
LAMBDAS = np.array([0.0, 0.3, 0.95, 1.0], np.float32)


def test_traced_gamma_and_lambda_under_vmap():
    r, v, nv, te, tr = _rollout(0, 7, (3,))

    def sweep(g, lam):
        return returns.gae(r, v, nv, te, tr, gamma=g, gae_lambda=lam)

    expected = [returns.gae(r, v, nv, te, tr, gamma=g, gae_lambda=lam)
                for g, lam in zip(GAMMAS.tolist(), LAMBDAS.tolist())]
    # Eagerly vmapped and jitted-vmapped sweeps over (gamma, lambda) pairs.
    for wrap in (lambda f: f, jax.jit):
        adv, targets = wrap(jax.vmap(sweep))(GAMMAS, LAMBDAS)
        for i, (exp_adv, exp_targets) in enumerate(expected):
            _assert_close("traced/gae_advantages", adv[i], exp_adv)
            _assert_close("traced/gae_targets", targets[i], exp_targets)

    # A sweep over gamma only, lambda held fixed.
    adv_g, _ = jax.jit(jax.vmap(lambda g: sweep(g, 0.9)))(GAMMAS)
    for i, g in enumerate(GAMMAS.tolist()):
        _assert_close("traced/gae_gamma_only", adv_g[i], sweep(g, 0.9)[0])

    per_gamma = {
        "td_errors": lambda g: returns.td_errors(r, v, nv, te, gamma=g),
        "discounted_returns": lambda g: returns.discounted_returns(r, nv, te, tr, gamma=g),
        "n_step_returns": lambda g: returns.n_step_returns(r, nv, te, tr, gamma=g, n=4),
    }
    for name, fn in per_gamma.items():
        out = jax.jit(jax.vmap(fn))(GAMMAS)
        for i, g in enumerate(GAMMAS.tolist()):
            _assert_close(f"traced/{name}", out[i], fn(g))


# ----------------------------------------------------------------------------
# Time limits in an infinite-horizon task.
# ----------------------------------------------------------------------------


def _time_limit_fixed_point(gae_lambda, time_limit_as, gamma=0.99, seq_len=200, limit=50,
                            iterations=1000):
    """TD fixed-point iteration of a tabular value in a one-state, reward-1 task.

    The task never terminates; a time limit cuts it every `limit` steps. Each
    iteration computes GAE targets over a rollout with V everywhere (the state
    never changes) and sets V to their mean.
    """
    at_limit = (np.arange(seq_len) + 1) % limit == 0
    never = np.zeros(seq_len, bool)
    terminated, truncated = (never, at_limit) if time_limit_as == "truncated" else (at_limit, never)
    rewards = np.ones(seq_len, np.float32)

    def _iterate(_, value):
        values = jnp.full((seq_len,), value)
        _, targets = returns.gae(rewards, values, values, terminated, truncated, gamma=gamma,
                                 gae_lambda=gae_lambda)
        return jnp.mean(targets)

    return float(jax.jit(lambda: jax.lax.fori_loop(0, iterations, _iterate, jnp.float32(0.0)))())


@pytest.mark.parametrize("gae_lambda", (0.0, 0.95))
def test_time_limit_truncation_recovers_infinite_horizon_value(gae_lambda):
    value = _time_limit_fixed_point(gae_lambda, "truncated")
    assert abs(value - 100.0) < 1.0, value


@pytest.mark.parametrize("gae_lambda", (0.0, 0.95))
def test_time_limit_as_termination_is_biased(gae_lambda):
    value = _time_limit_fixed_point(gae_lambda, "terminated")
    assert abs(value - 100.0) > 20.0, value
    if gae_lambda == 0.0:
        # Targets are 1 at the 4 limit steps of 200 and 1 + 0.99 V elsewhere, so
        # V = 1 / (1 - 0.99 * 196 / 200) = 33.557...
        np.testing.assert_allclose(value, 1.0 / (1.0 - 0.99 * 0.98), rtol=1e-3)


# ----------------------------------------------------------------------------
# Shapes, dtypes and argument handling.
# ----------------------------------------------------------------------------


def _all_outputs(r, v, nv, te, tr):
    adv, targets = returns.gae(r, v, nv, te, tr, gamma=0.9, gae_lambda=0.8)
    return {
        "gae_advantages": adv,
        "gae_targets": targets,
        "td_errors": returns.td_errors(r, v, nv, te, gamma=0.9),
        "discounted_returns": returns.discounted_returns(r, nv, te, tr, gamma=0.9),
        "n_step_returns": returns.n_step_returns(r, nv, te, tr, gamma=0.9, n=3),
    }


@pytest.mark.parametrize("batch_shape", ((), (3,), (2, 4)))
def test_output_shapes_and_dtypes(batch_shape):
    r, v, nv, te, tr = _rollout(3, 7, batch_shape)
    for name, out in _all_outputs(r, v, nv, te, tr).items():
        assert out.shape == (7,) + batch_shape, name
        assert out.dtype == jnp.float32, name


def test_int_flags_give_the_bool_result_float_and_non_binary_flags_are_refused():
    """Point 5: 0/1 int flags equal bool flags; a 2 (concrete) is a ValueError and a float flag
    a TypeError, each naming the flag."""
    r, v, nv, te, tr = _rollout(4, 7, (3,), p_term=0.3, p_trunc=0.3)
    from_bool = _all_outputs(r, v, nv, te, tr)
    for dtype in (np.int32, np.int64, np.uint8):
        from_int = _all_outputs(r, v, nv, te.astype(dtype), tr.astype(dtype))
        for name in from_bool:
            np.testing.assert_array_equal(from_bool[name], from_int[name], err_msg=name)
    lr = np.zeros_like(r)
    for flag in ("terminated", "truncated"):
        bad_int = {"terminated": te, "truncated": tr, flag: te.astype(np.int32) * 2}
        bad_float = {"terminated": te, "truncated": tr, flag: np.full(r.shape, 0.5, np.float32)}
        for bad, error, text in ((bad_int, ValueError, rf"{flag} holds \[2\]"),
                                 (bad_float, TypeError, rf"{flag} has dtype float32")):
            with pytest.raises(error, match=text):
                returns.gae(r, v, nv, bad["terminated"], bad["truncated"],
                            gamma=0.9, gae_lambda=0.9)
            with pytest.raises(error, match=text):
                returns.discounted_returns(r, nv, bad["terminated"], bad["truncated"], gamma=0.9)
            with pytest.raises(error, match=text):
                returns.n_step_returns(r, nv, bad["terminated"], bad["truncated"], gamma=0.9, n=2)
            with pytest.raises(error, match=text):
                returns.vtrace(r, v, nv, bad["terminated"], bad["truncated"], lr, gamma=0.9)
    with pytest.raises(TypeError, match="terminated has dtype float32"):
        returns.td_errors(r, v, nv, te.astype(np.float32), gamma=0.9)
    with pytest.raises(ValueError, match=r"terminated holds \[2\]"):
        returns.td_errors(r, v, nv, te.astype(np.int32) * 2, gamma=0.9)


def test_result_dtype_follows_rewards():
    r, v, nv, te, tr = (jnp.asarray(x) for x in _rollout(5, 6, (2,)))
    r, v, nv = (x.astype(jnp.bfloat16) for x in (r, v, nv))
    # A float32 (traced) gamma must not promote bfloat16 results.
    outs = jax.jit(lambda g: _all_outputs(r, v, nv, te, tr))(jnp.float32(0.9))
    for name, out in outs.items():
        assert out.dtype == jnp.bfloat16, name


def test_gae_unroll_does_not_change_results():
    rollout = _rollout(6, 33, (3,))
    base = returns.gae(*rollout, gamma=0.97, gae_lambda=0.9)
    for unroll in (4,):
        unrolled = returns.gae(*rollout, gamma=0.97, gae_lambda=0.9, unroll=unroll)
        for a, b in zip(base, unrolled):
            _assert_close("unroll/gae", a, b, tol=1e-6)


@pytest.mark.parametrize("n", (0, -2))
def test_n_step_rejects_non_positive_n(n):
    r, _, nv, te, tr = _rollout(7, 5)
    with pytest.raises(ValueError, match=rf"n >= 1.*n={n}"):
        returns.n_step_returns(r, nv, te, tr, gamma=0.9, n=n)


def test_rejects_mismatched_shapes_and_missing_time_axis():
    r, v, nv, te, tr = _rollout(8, 5, (3,))
    with pytest.raises(ValueError, match=r"values \(5, 2\)"):
        returns.gae(r, v[:, :2], nv, te, tr, gamma=0.9, gae_lambda=0.9)
    with pytest.raises(ValueError, match=r"terminated \(4, 3\)"):
        returns.discounted_returns(r, nv, te[:4], tr, gamma=0.9)
    with pytest.raises(ValueError, match="time-major"):
        returns.td_errors(r[0, 0], v[0, 0], nv[0, 0], te[0, 0], gamma=0.9)


# ----------------------------------------------------------------------------
# The library contract (docs/library-contract.md): errors, dtypes, layouts.
# ----------------------------------------------------------------------------


def test_values_with_one_more_step_than_rewards_gets_the_next_values_hint():
    """Point 1: rlax's [T+1, B] value layout passed as values."""
    r, v, nv, te, tr = _rollout(9, 5, (3,))
    values_rlax = np.concatenate([v, nv[-1:]])
    for fn, kwargs in ((returns.gae, {"gae_lambda": 0.9}), (returns.vtrace, {})):
        args = (r, values_rlax, nv, te, tr) + ((np.zeros_like(r),) if fn is returns.vtrace else ())
        with pytest.raises(ValueError) as info:
            fn(*args, gamma=0.9, **kwargs)
        message = str(info.value)
        assert "rewards (5, 3)" in message and "values (6, 3)" in message, message
        assert "values[:-1]" in message and "next_values" in message, message
    with pytest.raises(ValueError, match=r"values\[:-1\].*next_values"):
        returns.td_errors(r, values_rlax, nv, te, gamma=0.9)
    # Batch-major: the hint slices the time axis, axis 1.
    with pytest.raises(ValueError, match=r"values\[:, :-1\].*next_values"):
        returns.gae(r.T, values_rlax.T, nv.T, te.T, tr.T, gamma=0.9, gae_lambda=0.9,
                    time_major=False)


def test_wrong_dtype_error_names_the_argument():
    """Point 2."""
    r, v, nv, te, tr = _rollout(10, 5, (3,))
    ints = r.astype(np.int32)
    with pytest.raises(TypeError, match="gae: rewards has dtype int32"):
        returns.gae(ints, v, nv, te, tr, gamma=0.9, gae_lambda=0.9)
    with pytest.raises(TypeError, match="td_errors: values has dtype int32"):
        returns.td_errors(r, ints, nv, te, gamma=0.9)
    with pytest.raises(TypeError, match="discounted_returns: next_values has dtype int32"):
        returns.discounted_returns(r, ints, te, tr, gamma=0.9)
    with pytest.raises(TypeError, match="n_step_returns: rewards has dtype int32"):
        returns.n_step_returns(ints, nv, te, tr, gamma=0.9, n=2)
    with pytest.raises(TypeError, match="vtrace: log_rhos has dtype int32"):
        returns.vtrace(r, v, nv, te, tr, ints, gamma=0.9)
    with pytest.raises(TypeError, match="lambda_returns: discounts has dtype bool"):
        returns.lambda_returns(r, ~te, nv)


def _every_estimator(r, v, nv, te, tr, **kwargs):
    """Every estimator's outputs (as a dict), with keyword arguments for the layout."""
    adv, targets = returns.gae(r, v, nv, te, tr, gamma=0.9, gae_lambda=0.8, **kwargs)
    log_rhos = np.asarray(v) * 0.3
    vt = returns.vtrace(r, v, nv, te, tr, log_rhos, gamma=0.9, lambda_=0.9, **kwargs)
    discounts = 0.9 * (1 - np.asarray(te, np.float32))
    return {
        "gae_advantages": adv,
        "gae_targets": targets,
        "td_errors": returns.td_errors(r, v, nv, te, gamma=0.9, **kwargs),
        "discounted_returns": returns.discounted_returns(r, nv, te, tr, gamma=0.9, **kwargs),
        "n_step_returns": returns.n_step_returns(r, nv, te, tr, gamma=0.9, n=3, **kwargs),
        "lambda_returns": returns.lambda_returns(r, discounts.astype(np.asarray(r).dtype), nv,
                                                 lambda_=0.7, **kwargs),
        **{f"vtrace_{name}": x for name, x in vt._asdict().items()},
    }


def test_numpy_float64_inputs_give_float32_without_warning():
    """Point 3: x64 off, float64 NumPy inputs are canonicalised silently."""
    assert not jax.config.jax_enable_x64
    r, v, nv, te, tr = (x.astype(np.float64) if x.dtype == np.float32 else x
                        for x in _rollout(11, 6, (2,)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outs = _every_estimator(r, v, nv, te, tr)
        weights = returns.truncated_importance_weights(v, lambda_=np.float64(0.9))
    assert not caught, [str(w.message) for w in caught]
    for name, out in {**outs, "truncated_importance_weights": weights}.items():
        assert out.dtype == jnp.float32, name


def test_nan_or_inf_next_values_at_terminated_steps_reach_no_output():
    """Point 4: a terminated step ignores next_values entirely."""
    r, v, nv, te, tr = _rollout(12, 9, (4,), p_term=0.3, p_trunc=0.2)
    te[-1, 0] = te[3, 1] = True
    assert te.any()
    clean = _every_estimator(r, v, nv, te, tr)
    for poison in (np.nan, np.inf, -np.inf):
        bad_nv = np.where(te, np.float32(poison), nv)
        outs = _every_estimator(r, v, bad_nv, te, tr)
        for name, out in outs.items():
            assert np.isfinite(np.asarray(out)).all(), (name, poison)
            np.testing.assert_array_equal(out, clean[name], err_msg=name)
        grads = jax.grad(lambda x: returns.td_errors(r, v, x, te, gamma=0.9).sum())(bad_nv)
        assert np.isfinite(np.asarray(grads)).all()


def test_num_steps_catches_batch_major_input_and_time_major_false_transposes():
    """Point 6: a [B, T] rollout passed as time-major is caught by num_steps (the shapes alone
    cannot tell where T == B); time_major=False gives the transposed time-major result."""
    seq_len, batch = 7, 3
    r, v, nv, te, tr = _rollout(13, seq_len, (batch,), p_term=0.2, p_trunc=0.2)
    time_major = _every_estimator(r, v, nv, te, tr, num_steps=seq_len)
    batch_major = [x.T for x in (r, v, nv, te, tr)]
    with pytest.raises(ValueError, match=r"num_steps=7.*time_major=False"):
        returns.gae(*batch_major, gamma=0.9, gae_lambda=0.9, num_steps=seq_len)
    for fn, args, kwargs in (
        (returns.td_errors, batch_major[:4], {}),
        (returns.discounted_returns, batch_major[:1] + batch_major[2:], {}),
        (returns.n_step_returns, batch_major[:1] + batch_major[2:], {"n": 3}),
        (returns.vtrace, batch_major + [batch_major[1]], {}),
    ):
        with pytest.raises(ValueError, match="num_steps=7"):
            fn(*args, gamma=0.9, num_steps=seq_len, **kwargs)
    outs = _every_estimator(*batch_major, time_major=False, num_steps=seq_len)
    for name, out in outs.items():
        assert out.shape == (batch, seq_len), name
        np.testing.assert_array_equal(np.asarray(out).T, time_major[name], err_msg=name)
    # Where T == B, only num_steps tells the layouts apart: a wrong num_steps raises.
    square = _rollout(14, 4, (4,))
    with pytest.raises(ValueError, match="num_steps=5"):
        returns.gae(*square, gamma=0.9, gae_lambda=0.9, num_steps=5)


def test_mixed_float_dtypes_promote_bf16_rewards_with_f32_values_to_f32():
    """Point 7."""
    r, v, nv, te, tr = _rollout(15, 6, (2,))
    outs = _every_estimator(jnp.asarray(r, jnp.bfloat16), v, nv, te, tr)
    for name, out in outs.items():
        assert out.dtype == jnp.float32, name
    assert returns.gae(r, jnp.asarray(v, jnp.bfloat16), nv, te, tr, gamma=0.9,
                       gae_lambda=0.9)[0].dtype == jnp.float32


def test_gamma_and_lambda_must_be_scalars_in_range_and_may_be_traced():
    """Point 8."""
    r, v, nv, te, tr = _rollout(16, 6, (2,))
    per_step = np.full(r.shape[:1], 0.9, np.float32)
    for gamma in (per_step, np.full(r.shape, 0.9, np.float32)):
        with pytest.raises(ValueError, match=r"gamma must be a scalar.*lambda_returns\(discounts"):
            returns.gae(r, v, nv, te, tr, gamma=gamma, gae_lambda=0.9)
        with pytest.raises(ValueError, match=r"gamma must be a scalar.*lambda_returns"):
            returns.discounted_returns(r, nv, te, tr, gamma=gamma)
        with pytest.raises(ValueError, match=r"gamma must be a scalar.*lambda_returns"):
            returns.vtrace(r, v, nv, te, tr, np.zeros_like(r), gamma=gamma)
    with pytest.raises(ValueError, match=r"gamma=1.5 must lie in \[0.0, 1.0\]"):
        returns.gae(r, v, nv, te, tr, gamma=1.5, gae_lambda=0.9)
    with pytest.raises(ValueError, match=r"gae_lambda=-0.1 must lie in \[0.0, 1.0\]"):
        returns.gae(r, v, nv, te, tr, gamma=0.9, gae_lambda=-0.1)
    with pytest.raises(ValueError, match="gamma=1.5"):
        returns.n_step_returns(r, nv, te, tr, gamma=1.5, n=2)
    with pytest.raises(ValueError, match="gamma=-0.5"):
        returns.td_errors(r, v, nv, te, gamma=-0.5)
    with pytest.raises(ValueError, match="lambda_=2.0"):
        returns.vtrace(r, v, nv, te, tr, np.zeros_like(r), gamma=0.9, lambda_=2.0)
    with pytest.raises(ValueError, match="clip_rho_threshold=0.0"):
        returns.vtrace(r, v, nv, te, tr, np.zeros_like(r), gamma=0.9, clip_rho_threshold=0.0)
    with pytest.raises(TypeError, match="n must be a Python int"):
        returns.n_step_returns(r, nv, te, tr, gamma=0.9, n=2.5)
    # Traced hyperparameters pass unchecked and give the concrete results.
    jitted = jax.jit(lambda g, lam: returns.gae(r, v, nv, te, tr, gamma=g, gae_lambda=lam))
    for a, b in zip(jitted(0.9, 0.8), returns.gae(r, v, nv, te, tr, gamma=0.9, gae_lambda=0.8)):
        _assert_close("traced/gae_jit", a, b, tol=1e-6)
    traced = jax.jit(lambda g: _every_estimator(r, v, nv, te, tr) | {
        "n": returns.n_step_returns(r, nv, te, tr, gamma=g, n=3)})(jnp.float32(0.9))
    _assert_close("traced/n_step_jit", traced["n"], traced["n_step_returns"], tol=1e-6)
