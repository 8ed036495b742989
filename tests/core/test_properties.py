"""The library contract (docs/library-contract.md) on random inputs, for every public function
of `acjax.returns`, `acjax.losses` and `acjax.distributions`.

Hypothesis draws shapes, dtypes, episode-end flags and hyperparameters; each function must give
the same result jitted and eagerly and under `vmap` as in a loop (float32 within 1e-5 relative,
bfloat16 within 2e-2: XLA fuses differently under `jit`), finite gradients, the documented
result dtype (the promoted floating dtype of the main inputs; metrics float32) and, for the
losses, weights of ones equal to no weights and a zero weight equal to removing that sample.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acjax import distributions, losses, returns

SETTINGS = settings(max_examples=3, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TOLERANCE = {np.dtype(np.float32): 1e-5, np.dtype(jnp.bfloat16): 2e-2}


@dataclasses.dataclass(frozen=True)
class Case:
    """One public function: `build(draw, shape, dtype) -> (arrays, static)`; `fn(**arrays,
    **static)` calls it. `loss`: it takes `weights` / `reduction`; `batch_ndim`: the trailing
    axes of its arrays that are not batch axes (e.g. the action axis), `ensemble`: arrays with
    a leading critic axis that is not a batch axis."""

    name: str
    fn: Callable[..., Any]
    build: Callable[..., tuple[dict[str, Any], dict[str, Any]]]
    loss: bool = False
    main: tuple[str, ...] = ()
    trailing: dict[str, int] = dataclasses.field(default_factory=dict)
    ensemble: tuple[str, ...] = ()


def _floats(draw, shape, dtype, low=-2.0, high=2.0):
    seed = draw(st.integers(0, 2**31 - 1))
    values = np.random.default_rng(seed).uniform(low, high, size=shape)
    return jnp.asarray(values, dtype)


def _flags(draw, shape, p=0.2):
    seed = draw(st.integers(0, 2**31 - 1))
    return jnp.asarray(np.random.default_rng(seed).uniform(size=shape) < p)


def _unit(draw, low=0.0, high=1.0):
    low, high = (float(np.float32(x)) for x in (low, high))  # bounds a float32 can hold
    return draw(st.floats(low, high, allow_nan=False, width=32))


def _estimator_arrays(draw, shape, dtype, names):
    out = {}
    for name in names:
        out[name] = _flags(draw, shape) if name in ("terminated", "truncated") else (
            _floats(draw, shape, dtype))
    return out


def _case_estimators():
    def td(draw, shape, dtype):
        return (_estimator_arrays(draw, shape, dtype,
                                  ("rewards", "values", "next_values", "terminated")),
                {"gamma": _unit(draw)})

    def gae(draw, shape, dtype):
        return (_estimator_arrays(draw, shape, dtype, ("rewards", "values", "next_values",
                                                       "terminated", "truncated")),
                {"gamma": _unit(draw), "gae_lambda": _unit(draw)})

    def discounted(draw, shape, dtype):
        return (_estimator_arrays(draw, shape, dtype,
                                  ("rewards", "next_values", "terminated", "truncated")),
                {"gamma": _unit(draw)})

    def n_step(draw, shape, dtype):
        arrays, static = discounted(draw, shape, dtype)
        return arrays, {**static, "n": draw(st.integers(1, 4))}

    def lam(draw, shape, dtype):
        return ({"rewards": _floats(draw, shape, dtype),
                 "discounts": _floats(draw, shape, dtype, 0.0, 1.0),
                 "bootstrap_values": _floats(draw, shape, dtype)},
                {"lambda_": _unit(draw)})

    def vtrace(draw, shape, dtype):
        arrays = _estimator_arrays(draw, shape, dtype, ("rewards", "values", "next_values",
                                                        "terminated", "truncated"))
        arrays["log_rhos"] = _floats(draw, shape, dtype, -1.0, 1.0)
        return arrays, {"gamma": _unit(draw), "lambda_": _unit(draw)}

    def weights(draw, shape, dtype):
        return {"log_rhos": _floats(draw, shape, dtype)}, {"lambda_": _unit(draw)}

    main_rv = ("rewards", "values", "next_values")
    return [
        Case("td_errors", returns.td_errors, td, main=main_rv),
        Case("gae", returns.gae, gae, main=main_rv),
        Case("discounted_returns", returns.discounted_returns, discounted,
             main=("rewards", "next_values")),
        Case("n_step_returns", returns.n_step_returns, n_step, main=("rewards", "next_values")),
        Case("lambda_returns", returns.lambda_returns, lam,
             main=("rewards", "discounts", "bootstrap_values")),
        Case("vtrace", returns.vtrace, vtrace, main=main_rv),
        Case("truncated_importance_weights", returns.truncated_importance_weights, weights,
             main=("log_rhos",)),
    ]


def _case_losses():
    def pg(draw, shape, dtype):
        return {"log_probs": _floats(draw, shape, dtype, -3, 0),
                "advantages": _floats(draw, shape, dtype)}, {}

    def clip(draw, shape, dtype):
        arrays, _ = pg(draw, shape, dtype)
        arrays["old_log_probs"] = _floats(draw, shape, dtype, -3, 0)
        return arrays, {"clip_eps": _unit(draw, 0.05, 0.5)}

    def value(draw, shape, dtype):
        return ({"values": _floats(draw, shape, dtype), "targets": _floats(draw, shape, dtype),
                 "old_values": _floats(draw, shape, dtype)},
                {"clip_eps": _unit(draw, 0.05, 0.5)})

    def entropy(draw, shape, dtype):
        return {"entropies": _floats(draw, shape, dtype, 0, 2)}, {}

    def a2c(draw, shape, dtype):
        arrays = {**pg(draw, shape, dtype)[0], **entropy(draw, shape, dtype)[0],
                  "values": _floats(draw, shape, dtype), "targets": _floats(draw, shape, dtype)}
        return arrays, {"value_coef": _unit(draw), "entropy_coef": _unit(draw)}

    def ppo(draw, shape, dtype):
        arrays, static = a2c(draw, shape, dtype)
        arrays.update(old_log_probs=_floats(draw, shape, dtype, -3, 0),
                      old_values=_floats(draw, shape, dtype))
        return arrays, {**static, "clip_eps": _unit(draw, 0.05, 0.5),
                        "value_clip_eps": _unit(draw, 0.05, 0.5)}

    def critic(draw, shape, dtype):
        return ({"q_tm1": _floats(draw, (2, *shape), dtype),
                 "target": _floats(draw, shape, dtype)}, {"ensemble_axis": 0})

    def dpg(draw, shape, dtype):
        return ({"action": _floats(draw, (*shape, 2), dtype, -1, 1),
                 "dq_da": _floats(draw, (*shape, 2), dtype)}, {})

    def sac_actor(draw, shape, dtype):
        return ({"log_prob": _floats(draw, shape, dtype, -3, 1),
                 "q_values": _floats(draw, (2, *shape), dtype)},
                {"alpha": _unit(draw, 0.0, 1.0), "ensemble_axis": 0})

    def temperature(draw, shape, dtype):
        return ({"log_alpha": _floats(draw, (), dtype),
                 "log_prob": _floats(draw, shape, dtype, -3, 1)},
                {"target_entropy": -1.0})

    return [
        Case("policy_gradient_loss", losses.policy_gradient_loss, pg, loss=True,
             main=("log_probs", "advantages")),
        Case("ppo_clip_loss", losses.ppo_clip_loss, clip, loss=True,
             main=("log_probs", "old_log_probs", "advantages")),
        Case("value_loss", losses.value_loss, value, loss=True,
             main=("values", "targets", "old_values")),
        Case("entropy_bonus", losses.entropy_bonus, entropy, loss=True, main=("entropies",)),
        Case("a2c_loss", losses.a2c_loss, a2c, loss=True,
             main=("log_probs", "advantages", "values", "targets", "entropies")),
        Case("ppo_loss", losses.ppo_loss, ppo, loss=True,
             main=("log_probs", "old_log_probs", "advantages", "values", "targets",
                   "entropies", "old_values")),
        Case("critic_loss", losses.critic_loss, critic, loss=True, main=("q_tm1", "target"),
             ensemble=("q_tm1",)),
        Case("dpg_actor_loss", losses.dpg_actor_loss, dpg, loss=True, main=("action", "dq_da"),
             trailing={"action": 1, "dq_da": 1}),
        Case("sac_actor_loss", losses.sac_actor_loss, sac_actor, loss=True,
             main=("log_prob", "q_values"), ensemble=("q_values",)),
        Case("temperature_loss", losses.temperature_loss, temperature, loss=True,
             main=("log_alpha", "log_prob"), trailing={"log_alpha": -1}),
    ]


def _case_targets():
    def bellman(draw, shape, dtype):
        return ({"r_t": _floats(draw, shape, dtype), "terminated_t": _flags(draw, shape),
                 "q_t": _floats(draw, shape, dtype)}, {"gamma": _unit(draw)})

    def td3(draw, shape, dtype):
        arrays, static = bellman(draw, shape, dtype)
        arrays["q_t"] = _floats(draw, (2, *shape), dtype)
        return arrays, {**static, "ensemble_axis": 0}

    def sac(draw, shape, dtype):
        arrays, static = td3(draw, shape, dtype)
        arrays["log_prob_t"] = _floats(draw, shape, dtype, -3, 1)
        return arrays, {**static, "alpha": _unit(draw)}

    def normalize(draw, shape, dtype):
        return {"advantages": _floats(draw, shape, dtype)}, {}

    def categorical(draw, shape, dtype):
        seed = draw(st.integers(0, 2**31 - 1))
        actions = np.random.default_rng(seed).integers(0, 3, size=shape)
        return {"logits": _floats(draw, (*shape, 3), dtype),
                "actions": jnp.asarray(actions, jnp.int32)}, {}

    def gaussian(draw, shape, dtype):
        return {"mean": _floats(draw, (*shape, 2), dtype),
                "log_std": _floats(draw, (*shape, 2), dtype, -1, 0.5),
                "actions": _floats(draw, (*shape, 2), dtype, -0.9, 0.9)}, {}

    def categorical_terms(logits, actions):
        dist = distributions.Categorical(logits)
        return dist.log_prob(actions), dist.entropy()

    def gaussian_terms(mean, log_std, actions):
        dist = distributions.DiagGaussian(mean, log_std)
        return dist.log_prob(actions), dist.entropy()

    def tanh_gaussian_terms(mean, log_std, actions):
        return (distributions.TanhGaussian(mean, log_std).log_prob(actions),)

    trailing = {"mean": 1, "log_std": 1, "actions": 1}
    return [
        Case("bellman_target", losses.bellman_target, bellman, main=("r_t", "q_t")),
        Case("td3_target", losses.td3_target, td3, main=("r_t", "q_t"), ensemble=("q_t",)),
        Case("sac_target", losses.sac_target, sac, main=("r_t", "q_t", "log_prob_t"),
             ensemble=("q_t",)),
        Case("normalize_advantages", losses.normalize_advantages, normalize,
             main=("advantages",)),
        Case("Categorical", categorical_terms, categorical, main=("logits",),
             trailing={"logits": 1}),
        Case("DiagGaussian", gaussian_terms, gaussian, main=("mean", "log_std", "actions"),
             trailing=trailing),
        Case("TanhGaussian", tanh_gaussian_terms, gaussian, main=("mean", "log_std", "actions"),
             trailing=trailing),
    ]


def _case_search():
    def visits(draw, shape, dtype):
        return ({"visit_counts": jnp.round(_floats(draw, (*shape, 3), dtype, 0, 8)),
                 "legal_actions": _flags(draw, (*shape, 3), p=0.8)},
                {"temperature": _unit(draw, 0.0, 2.0)})

    def alphazero(draw, shape, dtype):
        target = jax.nn.softmax(_floats(draw, (*shape, 3), jnp.float32), axis=-1)
        return ({"policy_logits": _floats(draw, (*shape, 3), dtype),
                 "values": _floats(draw, shape, dtype, -1, 1),
                 "target_policies": target.astype(dtype),
                 "target_values": _floats(draw, shape, dtype, -1, 1)},
                {"value_coef": _unit(draw)})

    return [
        Case("visit_count_policy", losses.visit_count_policy, visits, main=("visit_counts",),
             trailing={"visit_counts": 1, "legal_actions": 1}),
        Case("alphazero_loss", losses.alphazero_loss, alphazero, loss=True,
             main=("policy_logits", "values", "target_policies", "target_values"),
             trailing={"policy_logits": 1, "target_policies": 1}),
    ]


CASES = {c.name: c for c in (*_case_estimators(), *_case_losses(), *_case_targets(),
                             *_case_search())}
ESTIMATORS = {c.name for c in _case_estimators()}


def test_every_public_function_has_a_case():
    public = set(returns.__all__) | set(losses.__all__)
    covered = set(CASES) | {"VTraceOutput", "polyak_update", "target_policy_smoothing"}
    assert public <= covered, sorted(public - covered)
    assert set(distributions.__all__) <= covered


# The draws: a batch shape, a dtype, then the case's own arrays and hyperparameters.
shapes = st.sampled_from([(1,), (3,), (4, 2), (2, 3)])
dtypes = st.sampled_from([np.float32, jnp.bfloat16])


def _draw(data, case: Case):
    shape, dtype = data.draw(shapes), data.draw(dtypes)
    arrays, static = case.build(data.draw, shape, dtype)
    return arrays, static, np.dtype(dtype)


def _call(case: Case, arrays, static):
    return case.fn(**arrays, **static)


def _close(a, b, dtype):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        tol = TOLERANCE[dtype]
        np.testing.assert_allclose(x, y, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", sorted(CASES))
@SETTINGS
@given(data=st.data())
def test_jit_equals_eager_and_the_dtype_is_documented(name, data):
    case = CASES[name]
    arrays, static, dtype = _draw(data, case)
    eager = _call(case, arrays, static)
    jitted = jax.jit(lambda a: _call(case, a, static))(arrays)
    _close(eager, jitted, dtype)
    out, metrics = (eager if case.loss else (eager, {}))
    for leaf in jax.tree.leaves(out):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            assert leaf.dtype == dtype, (name, leaf.dtype, dtype)
    for key, value in metrics.items():
        assert value.dtype == jnp.float32, (name, key, value.dtype)


@pytest.mark.parametrize("name", sorted(CASES))
@SETTINGS
@given(data=st.data())
def test_vmap_equals_a_loop(name, data):
    case = CASES[name]
    arrays, static, dtype = _draw(data, case)
    second = {k: (v[::-1] if np.ndim(v) else v) for k, v in arrays.items()}  # other data
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), arrays, second)
    mapped = jax.vmap(lambda a: _call(case, a, static))(stacked)
    for i, one in enumerate((arrays, second)):
        _close(jax.tree.map(lambda x, i=i: x[i], mapped), _call(case, one, static), dtype)


@pytest.mark.parametrize("name", sorted(CASES))
@SETTINGS
@given(data=st.data())
def test_gradients_are_finite(name, data):
    case = CASES[name]
    arrays, static, _ = _draw(data, case)
    floats = {k: v.astype(jnp.float32) for k, v in arrays.items()
              if jnp.issubdtype(v.dtype, jnp.floating)}
    others = {k: v for k, v in arrays.items() if k not in floats}

    def total(f):
        out = _call(case, {**others, **f}, static)
        out = out[0] if case.loss else out
        return sum(jnp.sum(x.astype(jnp.float32)) for x in jax.tree.leaves(out)
                   if jnp.issubdtype(x.dtype, jnp.floating))

    grads = jax.grad(total)(floats)
    for key, g in grads.items():
        assert np.all(np.isfinite(np.asarray(g))), (name, key)


LOSSES = sorted(name for name, c in CASES.items() if c.loss)


def _batch_shape(case: Case, arrays):
    for key in case.main:
        shape = np.shape(arrays[key])
        if key in case.ensemble:
            shape = shape[1:]
        trailing = case.trailing.get(key, 0)
        if trailing < 0:  # a scalar argument (temperature's log_alpha)
            continue
        return shape[: len(shape) - trailing] if trailing else shape
    raise AssertionError(case.name)


@pytest.mark.parametrize("name", LOSSES)
@SETTINGS
@given(data=st.data())
def test_weights_of_ones_change_nothing_and_a_zero_weight_removes_the_sample(name, data):
    case = CASES[name]
    arrays, static, dtype = _draw(data, case)
    batch = _batch_shape(case, arrays)
    plain = _call(case, arrays, static)
    ones = _call(case, arrays, {**static, "weights": jnp.ones(batch, dtype)})
    _close(plain, ones, dtype)
    if len(batch) != 1 or batch[0] < 2:
        return
    weights = jnp.ones(batch, dtype).at[0].set(0.0)
    masked = _call(case, arrays, {**static, "weights": weights})

    def drop_first(key, x):
        if np.ndim(x) == 0 or case.trailing.get(key, 0) < 0:
            return x
        return x[:, 1:] if key in case.ensemble else x[1:]

    kept = _call(case, {k: drop_first(k, v) for k, v in arrays.items()}, static)
    loss_masked, metrics_masked = masked
    loss_kept, metrics_kept = kept
    _close(loss_masked, loss_kept, dtype)
    # Batch statistics among the metrics (explained variance, ...) are weighted alike.
    _close(metrics_masked, metrics_kept, np.dtype(np.float32) if dtype == np.float32 else dtype)


def _fixed_draw(seed: int = 0):
    """A `draw` for the builders without hypothesis: seeded integers, 0.3 for every float."""
    rng = np.random.default_rng(seed)

    def draw(strategy):
        text = repr(strategy)
        if text.startswith("integers("):
            return int(rng.integers(0, 2**31 - 1))
        if text.startswith("floats("):
            return 0.3
        raise AssertionError(f"no fixed draw for {text}")

    return draw


@pytest.mark.parametrize("name", LOSSES)
def test_reductions_sum_and_none_agree_with_mean(name):
    case = CASES[name]
    arrays, static = case.build(_fixed_draw(), (5,), np.float32)
    mean, _ = _call(case, arrays, {**static, "reduction": "mean"})
    total, _ = _call(case, arrays, {**static, "reduction": "sum"})
    each, _ = _call(case, arrays, {**static, "reduction": "none"})
    assert each.shape == (5,)
    np.testing.assert_allclose(np.sum(each), total, rtol=1e-5)
    np.testing.assert_allclose(np.mean(each), mean, rtol=1e-5)
