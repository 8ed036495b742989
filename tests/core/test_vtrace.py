"""Tests for `acjax.returns.vtrace`, `lambda_returns` and `truncated_importance_weights`."""

import functools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rlax
from closeness import assert_close, call_variant, report_errors  # noqa: F401 - report_errors: a fixture

from acjax import returns

VARIANTS = ("plain", "jit", "vmap")
SHAPES = [(1, (3,)), (7, ()), (16, (4,)), (33, (2, 3))]
SEEDS = (0, 1, 2)
RLAX_TOL = 1e-6

def _assert_close(name, actual, expected, tol=1e-5):
    assert_close(name, actual, expected, tol)


_call = call_variant


def _rollout(seed, seq_len, batch_shape=(), p_term=0.15, p_trunc=0.15, consistent=False,
             scale=0.5):
    """A float32 rollout `(r, v, nv, terminated, truncated, log_rhos)` with bool flags; with
    `consistent=True`, `next_values[t] = values[t + 1]` off episode ends."""
    rng = np.random.default_rng(seed)
    shape = (seq_len,) + tuple(batch_shape)
    r, v, nv = (scale * rng.normal(size=shape).astype(np.float32) for _ in range(3))
    log_rhos = rng.normal(scale=0.7, size=shape).astype(np.float32)
    terminated = rng.random(shape) < p_term
    truncated = rng.random(shape) < p_trunc
    if consistent:
        done = terminated | truncated
        nv[:-1] = np.where(done[:-1], nv[:-1], v[1:])
    return r, v, nv, terminated, truncated, log_rhos


def _ref_vtrace(r, v, nv, term, trunc, log_rhos, gamma, lam, clip_rho, clip_pg):
    """V-trace over one `[T]` sequence, a plain float64 loop (the equations of the docstring)."""
    seq_len = len(r)
    rhos = [math.exp(x) for x in log_rhos]
    errors = [0.0] * seq_len
    acc = 0.0  # v_s[t + 1] - V(s_{t+1})
    for t in reversed(range(seq_len)):
        bootstrap = 0.0 if term[t] else gamma * nv[t]
        delta = min(clip_rho, rhos[t]) * (r[t] + bootstrap - v[t])
        continues = not (term[t] or trunc[t]) and t < seq_len - 1
        acc = delta + (gamma * lam * min(1.0, rhos[t]) * acc if continues else 0.0)
        errors[t] = acc
    targets = [e + x for e, x in zip(errors, v)]
    q, pg = [], []
    for t in range(seq_len):
        continues = not (term[t] or trunc[t]) and t < seq_len - 1
        successor = lam * targets[t + 1] + (1 - lam) * v[t + 1] if continues else nv[t]
        q.append(r[t] + (0.0 if term[t] else gamma * successor))
        pg.append(min(clip_pg, rhos[t]) * (q[t] - v[t]))
    return targets, errors, pg, q


def _per_column(ref, *arrays, **kwargs):
    """Applies a `[T]` reference to every trailing-batch column of `[T, ...]` arrays."""
    shape = np.shape(arrays[0])
    cols = [np.asarray(a, np.float64).reshape(shape[0], -1) for a in arrays]
    results = [ref(*(c[:, b].tolist() for c in cols), **kwargs) for b in range(cols[0].shape[1])]
    return tuple(np.array(parts).T.reshape(shape) for parts in zip(*results))


# ----------------------------------------------------------------------------
# V-trace against a Python loop, with terminations and truncations.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("seq_len,batch_shape", SHAPES)
@pytest.mark.parametrize("lam,clip_rho,clip_pg", [(1.0, 1.0, 1.0), (0.8, 2.0, 0.5)])
def test_vtrace_matches_python_loop(variant, seq_len, batch_shape, lam, clip_rho, clip_pg):
    rollouts = [_rollout(s, seq_len, batch_shape, p_term=0.2, p_trunc=0.2) for s in SEEDS]
    assert any(ro[3].any() and ro[4].any() for ro in rollouts) or seq_len == 1
    kwargs = dict(gamma=0.95, lambda_=lam, clip_rho_threshold=clip_rho,
                  clip_pg_rho_threshold=clip_pg)
    outs = _call(variant, returns.vtrace, rollouts, **kwargs)
    for rollout, out in zip(rollouts, outs):
        assert isinstance(out, returns.VTraceOutput)
        expected = _per_column(_ref_vtrace, *rollout, gamma=0.95, lam=lam, clip_rho=clip_rho,
                               clip_pg=clip_pg)
        for name, actual, ref in zip(out._fields, out, expected):
            _assert_close(f"loop/{name}", actual, ref)


def test_vtrace_truncation_bootstraps_from_the_final_observation():
    """A truncated step bootstraps from V(s'_t) and stops the trace; a terminated one does not
    bootstrap."""
    r = np.array([1.0, 1.0, 1.0], np.float32)
    v = np.array([0.0, 0.0, 0.0], np.float32)
    nv = np.array([0.0, 10.0, 4.0], np.float32)
    term = np.array([False, False, True])
    trunc = np.array([False, True, False])
    out = returns.vtrace(r, v, nv, term, trunc, np.zeros(3, np.float32), gamma=0.5)
    # t2 terminated: 1; t1 truncated: 1 + 0.5 * 10 = 6; t0: 1 + 0.5 * 6 = 4.
    np.testing.assert_allclose(out.targets, [4.0, 6.0, 1.0])
    np.testing.assert_allclose(out.q_estimates, [4.0, 6.0, 1.0])
    np.testing.assert_allclose(out.pg_advantages, [4.0, 6.0, 1.0])


# ----------------------------------------------------------------------------
# Parity with rlax (no truncation; rlax is per sequence [T], acjax takes [T, ...]).
# ----------------------------------------------------------------------------


@functools.cache
def _rlax_batched(fn, **kwargs):
    return jax.jit(jax.vmap(functools.partial(fn, **kwargs), in_axes=1, out_axes=1))


def _rlax_args(rollout, gamma):
    r, v, nv, te, _, log_rhos = rollout
    flat = [np.reshape(x, (x.shape[0], -1)) for x in (v, nv, r)]
    discount = (gamma * (1.0 - te.astype(np.float32))).reshape(te.shape[0], -1)
    return (*flat, discount.astype(np.float32), np.exp(log_rhos).reshape(te.shape[0], -1))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("seq_len,batch_shape", [(7, (4,)), (33, (2, 3))])
@pytest.mark.parametrize("lam,clip_rho,clip_pg", [(1.0, 1.0, 1.0), (1.0, 1.5, 0.8),
                                                  (0.9, 1.0, 1.0), (0.7, 2.0, 0.5)])
def test_vtrace_matches_rlax_without_truncation(variant, seq_len, batch_shape, lam, clip_rho,
                                                clip_pg):
    gamma = 0.95
    rollouts = [_rollout(s, seq_len, batch_shape, p_trunc=0.0) for s in SEEDS]
    outs = _call(variant, returns.vtrace, rollouts, gamma=gamma, lambda_=lam,
                 clip_rho_threshold=clip_rho, clip_pg_rho_threshold=clip_pg)
    for rollout, out in zip(rollouts, outs):
        shape = rollout[0].shape
        args = _rlax_args(rollout, gamma)
        errors = _rlax_batched(rlax.vtrace, lambda_=lam, clip_rho_threshold=clip_rho)(*args)
        full = _rlax_batched(rlax.vtrace_td_error_and_advantage, lambda_=lam,
                             clip_rho_threshold=clip_rho, clip_pg_rho_threshold=clip_pg)(*args)
        _assert_close("rlax/vtrace", out.errors, errors.reshape(shape), RLAX_TOL)
        _assert_close("rlax/errors", out.errors, full.errors.reshape(shape), RLAX_TOL)
        _assert_close("rlax/targets", out.targets, (full.errors + args[0]).reshape(shape),
                      RLAX_TOL)
        _assert_close("rlax/pg_advantage", out.pg_advantages,
                      full.pg_advantage.reshape(shape), RLAX_TOL)
        _assert_close("rlax/q_estimate", out.q_estimates, full.q_estimate.reshape(shape),
                      RLAX_TOL)


# ----------------------------------------------------------------------------
# On-policy: V-trace is the bootstrapped n-step return with n >= T.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("seq_len,batch_shape", [(7, ()), (33, (2, 3))])
@pytest.mark.parametrize("clip_rho,clip_pg", [(1.0, 1.0), (3.0, 2.0)])
def test_on_policy_vtrace_equals_discounted_returns(variant, seq_len, batch_shape, clip_rho,
                                                    clip_pg):
    gamma = 0.95
    rollouts = [_rollout(s, seq_len, batch_shape, consistent=True)[:5] + (
        np.zeros((seq_len,) + batch_shape, np.float32),) for s in SEEDS]
    outs = _call(variant, returns.vtrace, rollouts, gamma=gamma, lambda_=1.0,
                 clip_rho_threshold=clip_rho, clip_pg_rho_threshold=clip_pg)
    for (r, v, nv, te, tr, _), out in zip(rollouts, outs):
        expected = returns.discounted_returns(r, nv, te, tr, gamma=gamma)
        n_step = returns.n_step_returns(r, nv, te, tr, gamma=gamma, n=seq_len + 3)
        adv, targets = returns.gae(r, v, nv, te, tr, gamma=gamma, gae_lambda=1.0)
        _assert_close("on_policy/targets_vs_returns", out.targets, expected)
        _assert_close("on_policy/targets_vs_n_step", out.targets, n_step)
        _assert_close("on_policy/targets_vs_gae1", out.targets, targets, 1e-6)
        _assert_close("on_policy/errors_vs_gae1", out.errors, adv, 1e-6)
        _assert_close("on_policy/q_vs_returns", out.q_estimates, expected)
        _assert_close("on_policy/pg_vs_returns", out.pg_advantages, expected - v)


def test_vtrace_gradients_flow_through_values_only_in_errors():
    r, v, nv, te, tr, log_rhos = _rollout(4, 9, (3,))

    def loss(v, nv, log_rhos, field):
        out = returns.vtrace(r, v, nv, te, tr, log_rhos, gamma=0.9)
        return jnp.sum(getattr(out, field) ** 2)

    for field in ("targets", "pg_advantages", "q_estimates"):
        for g in jax.grad(loss, argnums=(0, 1, 2))(v, nv, log_rhos, field):
            np.testing.assert_array_equal(g, 0.0, err_msg=field)
    errors = returns.vtrace(r, v, nv, te, tr, log_rhos, gamma=0.9).errors
    dv, dnv, drho = jax.grad(loss, argnums=(0, 1, 2))(v, nv, log_rhos, "errors")
    np.testing.assert_allclose(dv, -2 * np.asarray(errors), rtol=1e-6)
    np.testing.assert_array_equal(dnv, 0.0)
    np.testing.assert_array_equal(drho, 0.0)


def test_vtrace_batch_major_is_the_transposed_time_major_result():
    r, v, nv, te, tr, lr = _rollout(5, 6, (4,))
    out = returns.vtrace(r, v, nv, te, tr, lr, gamma=0.9, lambda_=0.8, num_steps=6)
    bm = returns.vtrace(*(x.T for x in (r, v, nv, te, tr, lr)), gamma=0.9, lambda_=0.8,
                        time_major=False, num_steps=6)
    for name, a, b in zip(out._fields, out, bm):
        np.testing.assert_array_equal(np.asarray(b).T, a, err_msg=name)
    with pytest.raises(ValueError, match="num_steps=6"):
        returns.vtrace(*(x.T for x in (r, v, nv, te, tr, lr)), gamma=0.9, num_steps=6)


# ----------------------------------------------------------------------------
# lambda_returns and truncated_importance_weights.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("seq_len,batch_shape", [(1, (3,)), (7, ()), (33, (2, 3))])
@pytest.mark.parametrize("lam", (0.0, 0.6, 1.0))
def test_lambda_returns_matches_rlax(variant, seq_len, batch_shape, lam):
    batch = []
    for seed in SEEDS:
        r, _, nv, te, _, _ = _rollout(seed, seq_len, batch_shape, p_term=0.2)
        discounts = np.where(te, 0.0, np.linspace(0.8, 0.99, seq_len).reshape(
            (seq_len,) + (1,) * len(batch_shape))).astype(np.float32)
        batch.append((r, discounts, nv))
    outs = _call(variant, returns.lambda_returns, batch, lambda_=lam)
    for (r, d, nv), out in zip(batch, outs):
        flat = [x.reshape(seq_len, -1) for x in (r, d, nv)]
        expected = _rlax_batched(rlax.lambda_returns, lambda_=lam)(*flat).reshape(r.shape)
        _assert_close("rlax/lambda_returns", out, expected, RLAX_TOL)


def test_lambda_returns_equals_gae_targets_without_truncation():
    r, v, nv, te, tr, _ = _rollout(6, 16, (3,), p_trunc=0.0, consistent=True)
    discounts = (0.95 * (1 - te.astype(np.float32))).astype(np.float32)
    _, targets = returns.gae(r, v, nv, te, tr, gamma=0.95, gae_lambda=0.7)
    _assert_close("cross/lambda_vs_gae", returns.lambda_returns(r, discounts, nv, lambda_=0.7),
                  targets)


def test_lambda_returns_zero_discount_ignores_bootstrap_values():
    r, _, nv, te, _, _ = _rollout(7, 9, (2,), p_term=0.3)
    te[-1] = True
    discounts = np.where(te, 0.0, 0.9).astype(np.float32)
    clean = returns.lambda_returns(r, discounts, nv, lambda_=0.5)
    poisoned = returns.lambda_returns(r, discounts, np.where(te, np.nan, nv), lambda_=0.5)
    assert np.isfinite(np.asarray(poisoned)).all()
    np.testing.assert_array_equal(poisoned, clean)


@pytest.mark.parametrize("shape", [(), (5,), (3, 4)])
@pytest.mark.parametrize("lam,clip", [(1.0, 1.0), (0.9, 2.0), (0.0, 0.5)])
def test_truncated_importance_weights_match_numpy(shape, lam, clip):
    log_rhos = np.random.default_rng(8).normal(size=shape).astype(np.float32)
    expected = lam * np.minimum(clip, np.exp(log_rhos))
    out = returns.truncated_importance_weights(log_rhos, lambda_=lam, clip=clip)
    assert out.shape == shape and out.dtype == jnp.float32
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    jitted = jax.jit(lambda x, c: returns.truncated_importance_weights(x, lambda_=lam, clip=c))
    np.testing.assert_allclose(jitted(log_rhos, clip), expected, rtol=1e-6)
    grad = jax.grad(lambda x: returns.truncated_importance_weights(x, lambda_=lam).sum())
    np.testing.assert_array_equal(grad(log_rhos), 0.0)  # a weight: stop_gradient


def test_truncated_importance_weights_checks_its_arguments():
    with pytest.raises(TypeError, match="log_rhos has dtype int32"):
        returns.truncated_importance_weights(np.zeros(3, np.int32))
    with pytest.raises(ValueError, match="lambda_=1.5"):
        returns.truncated_importance_weights(np.zeros(3, np.float32), lambda_=1.5)
    with pytest.raises(ValueError, match="clip=0.0"):
        returns.truncated_importance_weights(np.zeros(3, np.float32), clip=0.0)


# ----------------------------------------------------------------------------
# The contract for the new functions: NaN safety, dtypes, no warnings, errors.
# ----------------------------------------------------------------------------


def test_vtrace_ignores_nan_and_inf_next_values_at_terminated_steps():
    r, v, nv, te, tr, lr = _rollout(9, 12, (3,), p_term=0.3, p_trunc=0.2)
    te[-1, 0] = te[4, 1] = True
    clean = returns.vtrace(r, v, nv, te, tr, lr, gamma=0.9, lambda_=0.9)
    for poison in (np.nan, np.inf, -np.inf):
        out = returns.vtrace(r, v, np.where(te, np.float32(poison), nv), te, tr, lr, gamma=0.9,
                             lambda_=0.9)
        for name, a, b in zip(out._fields, out, clean):
            assert np.isfinite(np.asarray(a)).all(), (name, poison)
            np.testing.assert_array_equal(a, b, err_msg=name)


def test_new_functions_give_float32_for_numpy_float64_without_warning():
    r, v, nv, te, tr, lr = (x.astype(np.float64) if x.dtype == np.float32 else x
                            for x in _rollout(10, 6, (2,)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outs = list(returns.vtrace(r, v, nv, te, tr, lr, gamma=np.float64(0.9)))
        outs.append(returns.lambda_returns(r, 0.9 * (1.0 - te), nv, lambda_=np.float64(0.5)))
        outs.append(returns.truncated_importance_weights(lr, lambda_=0.9, clip=np.float64(2)))
    assert not caught, [str(w.message) for w in caught]
    assert all(out.dtype == jnp.float32 for out in outs)


def test_new_functions_promote_mixed_dtypes_and_name_bad_arguments():
    r, v, nv, te, tr, lr = _rollout(11, 6, (2,))
    bf16 = jnp.asarray(r, jnp.bfloat16)
    assert all(x.dtype == jnp.float32 for x in returns.vtrace(bf16, v, nv, te, tr, lr, gamma=0.9))
    assert returns.lambda_returns(bf16, np.full_like(r, 0.9), nv).dtype == jnp.float32
    all_bf16 = [jnp.asarray(x, jnp.bfloat16) for x in (r, v, nv)]
    assert returns.vtrace(*all_bf16, te, tr, jnp.asarray(lr, jnp.bfloat16),
                          gamma=0.9).targets.dtype == jnp.bfloat16
    with pytest.raises(TypeError, match="vtrace: rewards has dtype int32"):
        returns.vtrace(r.astype(np.int32), v, nv, te, tr, lr, gamma=0.9)
    with pytest.raises(TypeError, match="truncated has dtype float32"):
        returns.vtrace(r, v, nv, te, tr.astype(np.float32), lr, gamma=0.9)
    with pytest.raises(ValueError, match=r"log_rhos \(5, 2\)"):
        returns.vtrace(r, v, nv, te, tr, lr[:5], gamma=0.9)
    with pytest.raises(ValueError, match="clip_pg_rho_threshold=-1.0"):
        returns.vtrace(r, v, nv, te, tr, lr, gamma=0.9, clip_pg_rho_threshold=-1.0)
    with pytest.raises(ValueError, match=r"bootstrap_values \(7, 2\).*values\[1:\]"):
        returns.lambda_returns(r, np.full_like(r, 0.9), np.concatenate([v, nv[-1:]]))
    with pytest.raises(ValueError, match="lambda_=-0.5"):
        returns.lambda_returns(r, np.full_like(r, 0.9), nv, lambda_=-0.5)
    with pytest.raises(ValueError, match="lambda_ must be a scalar"):
        returns.lambda_returns(r, np.full_like(r, 0.9), nv, lambda_=np.full(6, 0.5))
