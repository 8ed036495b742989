"""Tests for the off-policy section of `acjax.losses` (DDPG, TD3, SAC building blocks)."""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rlax

from acjax import losses

TOL = 1e-6


def f32(x):
    return jnp.asarray(x, jnp.float32)


def _close(actual, expected, tol=TOL):
    np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(expected, np.float64),
                               rtol=0, atol=tol)


def _is_scalar_dict(metrics, keys):
    return set(metrics) >= set(keys) and all(jnp.shape(v) == () for v in metrics.values())


# ----------------------------------------------------------------------------
# Targets: hand-computed values and termination semantics
# ----------------------------------------------------------------------------


def test_bellman_target_hand_computed():
    r_t = f32([1.0, 2.0, 3.0, -1.0])
    terminated_t = jnp.asarray([False, True, False, True])
    q_t = f32([10.0, 10.0, -5.0, 4.0])
    # [1 + 0.9 * 10, 2, 3 + 0.9 * -5, -1] = [10, 2, -1.5, -1].
    expected = [10.0, 2.0, -1.5, -1.0]
    _close(losses.bellman_target(r_t, terminated_t, q_t, gamma=0.9), expected)
    # 0/1 integer flags are accepted; float flags are refused.
    _close(losses.bellman_target(r_t, terminated_t.astype(jnp.int32), q_t, gamma=0.9), expected)
    with pytest.raises(TypeError, match="terminated_t has dtype float32"):
        losses.bellman_target(r_t, terminated_t.astype(jnp.float32), q_t, gamma=0.9)
    _close(jax.jit(lambda r, d, q, g: losses.bellman_target(r, d, q, gamma=g))(
        r_t, terminated_t, q_t, f32(0.9)), expected)
    # A per-transition discount (e.g. γⁿ of n-step transitions) folded into q_t.
    _close(losses.bellman_target(r_t, terminated_t, f32([0.5, 0.5, 0.1, 0.1]) * q_t, gamma=1.0),
           [6.0, 2.0, 2.5, -1.0])


def test_truncated_transitions_bootstrap_terminated_do_not():
    # Two transitions with the same reward and next-state value: the first was cut off by a
    # time limit (truncated, not terminated): it bootstraps from the true next observation's
    # value. The second ended in a terminal state: it does not.
    r_t = f32([1.0, 1.0])
    truncated_t = np.array([True, False])  # not an argument: only termination matters
    terminated_t = jnp.asarray([False, True])
    q_t = f32([5.0, 5.0])
    target = losses.bellman_target(r_t, terminated_t, q_t, gamma=0.99)
    _close(target, [1.0 + 0.99 * 5.0, 1.0])
    # Treating `done = terminated or truncated` as termination would lose the bootstrap.
    done = jnp.logical_or(terminated_t, truncated_t)
    assert not np.allclose(losses.bellman_target(r_t, done, q_t, gamma=0.99), target)
    # The same holds for the TD3 and SAC targets.
    q2 = jnp.stack([q_t, q_t + 1.0])
    _close(losses.td3_target(r_t, terminated_t, q2, gamma=0.99, ensemble_axis=0),
           [1.0 + 0.99 * 5.0, 1.0])
    _close(losses.sac_target(r_t, terminated_t, q2, f32([0.0, 7.0]), gamma=0.99, alpha=0.1,
                             ensemble_axis=0), [1.0 + 0.99 * 5.0, 1.0])


def test_td3_target_hand_computed():
    q_t = f32([[1.0, 5.0, -2.0], [3.0, 4.0, -1.0]])  # min over critics: [1, 4, -2]
    r_t = f32([0.0, 1.0, 2.0])
    terminated_t = jnp.asarray([False, False, True])
    # [0 + 0.5 * 1, 1 + 0.5 * 4, 2] = [0.5, 3, 2].
    _close(losses.td3_target(r_t, terminated_t, q_t, gamma=0.5, ensemble_axis=0),
           [0.5, 3.0, 2.0])
    # The critics on the last axis.
    _close(losses.td3_target(r_t, terminated_t, q_t.T, gamma=0.5, ensemble_axis=-1),
           [0.5, 3.0, 2.0])
    # One critic `[N]` (ensemble_axis=None) is its own minimum.
    _close(losses.td3_target(r_t, terminated_t, q_t[1], gamma=0.5, ensemble_axis=None),
           [1.5, 3.0, 2.0])


def test_sac_target_hand_computed():
    q_t = f32([[1.0, 5.0, -2.0], [3.0, 4.0, -1.0]])  # min: [1, 4, -2]
    r_t = f32([0.0, 1.0, 2.0])
    terminated_t = jnp.asarray([False, False, True])
    log_prob_t = f32([-1.0, 0.5, 2.0])
    kw = dict(gamma=0.5, ensemble_axis=0)
    # Soft values min q - 0.2 log π = [1.2, 3.9, -2.4];
    # targets [0 + 0.5 * 1.2, 1 + 0.5 * 3.9, 2] = [0.6, 2.95, 2].
    _close(losses.sac_target(r_t, terminated_t, q_t, log_prob_t, alpha=0.2, **kw),
           [0.6, 2.95, 2.0])
    # α = 0 is TD3's target (without smoothing).
    _close(losses.sac_target(r_t, terminated_t, q_t, log_prob_t, alpha=0.0, **kw),
           losses.td3_target(r_t, terminated_t, q_t, **kw))
    # α may be traced and vmapped over (a sweep).
    alphas = f32([0.0, 0.2])
    swept = jax.vmap(lambda a: losses.sac_target(r_t, terminated_t, q_t, log_prob_t, alpha=a,
                                                 **kw))(alphas)
    _close(swept, [[0.5, 3.0, 2.0], [0.6, 2.95, 2.0]])


# ----------------------------------------------------------------------------
# Losses: hand-computed values
# ----------------------------------------------------------------------------


def test_critic_loss_hand_computed_twin_and_single():
    q = f32([[1.0, 2.0, 3.0], [0.0, 2.0, 5.0]])
    y = f32([1.0, 1.0, 1.0])
    # Critic 1: errors [0, 1, 2], ½ mean sq = ½ 5/3 = 5/6. Critic 2: errors [-1, 1, 4],
    # ½ mean sq = ½ 18/3 = 3. Sum: 23/6.
    loss, metrics = losses.critic_loss(q, y, ensemble_axis=0)
    _close(loss, 23.0 / 6.0)
    assert _is_scalar_dict(metrics, ["critic_loss", "critic_q_mean", "critic_target_mean",
                                     "critic_td_error_abs"])
    _close(metrics["critic_loss"], 23.0 / 6.0)
    _close(metrics["critic_q_mean"], 13.0 / 6.0)
    _close(metrics["critic_target_mean"], 1.0)
    _close(metrics["critic_td_error_abs"], 9.0 / 6.0)
    # The critics on the last axis.
    _close(losses.critic_loss(q.T, y, ensemble_axis=1)[0], 23.0 / 6.0)
    # One critic: its own ½ MSE.
    _close(losses.critic_loss(q[0], y)[0], 5.0 / 6.0)
    # ∂L/∂q_k = (q_k - y) / N for each critic; the target gets nothing.
    grad_q, grad_y = jax.jit(jax.grad(
        lambda q, y: losses.critic_loss(q, y, ensemble_axis=0)[0], (0, 1)))(q, y)
    _close(grad_q, [[0.0, 1 / 3, 2 / 3], [-1 / 3, 1 / 3, 4 / 3]])
    _close(grad_y, np.zeros(3))


def test_dpg_actor_loss_hand_computed():
    action = f32([[0.5, -0.5], [0.0, 1.0]])
    dq_da = f32([[1.0, 2.0], [0.0, -2.0]])
    # ½ |dq_da|² per example: [2.5, 2]; mean 2.25.
    loss, metrics = losses.dpg_actor_loss(action, dq_da)
    _close(loss, 2.25)
    assert _is_scalar_dict(metrics, ["dpg_loss", "dpg_dq_da_norm"])
    _close(metrics["dpg_dq_da_norm"], (math.sqrt(5.0) + 2.0) / 2.0)
    # ∂L/∂a = -dq_da / N; dq_da gets nothing.
    grad_a, grad_dq = jax.jit(jax.grad(lambda a, d: losses.dpg_actor_loss(a, d)[0], (0, 1)))(
        action, dq_da)
    _close(grad_a, [[-0.5, -1.0], [0.0, 1.0]])
    _close(grad_dq, np.zeros((2, 2)))
    # Clipping the first row to norm 1: ½ (1 + 4) = 2.5 becomes ½; mean (0.5 + 2) / 2 = 1.25.
    _close(losses.dpg_actor_loss(action, dq_da, dq_da_clipping=2.0)[0], (2.0 + 2.0) / 2.0)
    _close(losses.dpg_actor_loss(action, dq_da, dq_da_clipping=1.0)[0], (0.5 + 0.5) / 2.0)


@pytest.mark.parametrize("clipping", [None, 0.7])
def test_dpg_actor_loss_matches_rlax(clipping):
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    action = jax.random.normal(k1, (16, 3))
    dq_da = jax.random.normal(k2, (16, 3))

    def ours(a):
        return losses.dpg_actor_loss(a, dq_da, dq_da_clipping=clipping)[0]

    def reference(a):
        # rlax returns the elementwise ½ (sg(a + dq/da) - a)², shape [D], per example.
        per_example = jax.vmap(lambda a_t, d_t: rlax.dpg_loss(a_t, d_t, dqda_clipping=clipping))
        per_component = per_example(a, dq_da)
        assert per_component.shape == (16, 3)
        return jnp.mean(jnp.sum(per_component, axis=-1))

    _close(jax.jit(ours)(action), jax.jit(reference)(action), 1e-5)
    _close(jax.jit(jax.grad(ours))(action), jax.jit(jax.grad(reference))(action), 1e-6)


def test_sac_actor_loss_hand_computed():
    log_prob = f32([-1.0, 0.5])
    q = f32([[1.0, 3.0], [2.0, 2.0]])  # min: [1, 2]
    # [0.5 * -1 - 1, 0.5 * 0.5 - 2] = [-1.5, -1.75]; mean -1.625.
    loss, metrics = losses.sac_actor_loss(log_prob, q, alpha=0.5, ensemble_axis=0)
    _close(loss, -1.625)
    assert _is_scalar_dict(metrics, ["sac_actor_loss", "sac_actor_neg_log_prob",
                                     "sac_actor_alpha", "sac_actor_q_mean"])
    _close(metrics["sac_actor_neg_log_prob"], 0.25)
    _close(metrics["sac_actor_alpha"], 0.5)
    _close(metrics["sac_actor_q_mean"], 1.5)
    # ∂L/∂log π = α / N; ∂L/∂q = -1/N at each minimum, 0 elsewhere; α gets nothing.
    g_lp, g_q, g_log_alpha = jax.grad(
        lambda lp, q, la: losses.sac_actor_loss(lp, q, alpha=jnp.exp(la), ensemble_axis=0)[0],
        (0, 1, 2))(log_prob, q, f32(math.log(0.5)))
    _close(g_lp, [0.25, 0.25])
    _close(g_q, [[-0.5, 0.0], [0.0, -0.5]])
    _close(g_log_alpha, 0.0)
    # A single critic `[N]`.
    _close(losses.sac_actor_loss(log_prob, q[0], alpha=0.5, ensemble_axis=None)[0],
           (-1.5 + 0.25 - 3.0) / 2.0)


def test_temperature_loss_hand_computed():
    log_alpha = f32(math.log(0.5))
    log_prob = f32([-1.0, 0.5])
    # sg(log π + H̄) with H̄ = -1: [-2, -0.5], mean -1.25; loss = 1.25 log α.
    loss, metrics = losses.temperature_loss(log_alpha, log_prob, target_entropy=-1.0)
    _close(loss, 1.25 * math.log(0.5))
    assert _is_scalar_dict(metrics, ["temperature_loss", "temperature_alpha",
                                     "temperature_neg_log_prob"])
    _close(metrics["temperature_alpha"], 0.5)
    _close(metrics["temperature_neg_log_prob"], 0.25)
    # ∂L/∂log α = entropy estimate - H̄ = 0.25 + 1 = 1.25 (> 0: α shrinks, the policy is
    # more random than the target); log π gets nothing.
    g_la, g_lp = jax.grad(
        lambda la, lp: losses.temperature_loss(la, lp, target_entropy=-1.0)[0], (0, 1))(
        log_alpha, log_prob)
    _close(g_la, 1.25)
    _close(g_lp, [0.0, 0.0])
    # Below the target entropy the gradient has the other sign: α grows.
    _close(jax.grad(
        lambda la: losses.temperature_loss(la, log_prob, target_entropy=3.0)[0])(log_alpha),
        -2.75)


def test_polyak_update_hand_and_limits():
    online = {"w": f32([1.0, 2.0]), "b": f32(3.0)}
    target = {"w": f32([0.0, 0.0]), "b": f32(-1.0)}
    new = losses.polyak_update(online, target, tau=0.1)
    _close(new["w"], [0.1, 0.2])
    _close(new["b"], 0.1 * 3.0 + 0.9 * -1.0)
    for leaf_new, leaf_online in zip(jax.tree_util.tree_leaves(losses.polyak_update(
            online, target, tau=1.0)), jax.tree_util.tree_leaves(online)):
        np.testing.assert_array_equal(leaf_new, leaf_online)
    for leaf_new, leaf_target in zip(jax.tree_util.tree_leaves(losses.polyak_update(
            online, target, tau=0.0)), jax.tree_util.tree_leaves(target)):
        np.testing.assert_array_equal(leaf_new, leaf_target)
    # τ traced under jit; dtypes kept.
    new = jax.jit(lambda o, t, tau: losses.polyak_update(o, t, tau=tau))(online, target, f32(0.5))
    _close(new["w"], [0.5, 1.0])
    assert new["w"].dtype == jnp.float32
    mixed = losses.polyak_update({"x": jnp.ones(2, jnp.float32)},
                                 {"x": jnp.zeros(2, jnp.bfloat16)}, tau=0.5)
    assert mixed["x"].dtype == jnp.bfloat16


def test_target_policy_smoothing():
    key = jax.random.PRNGKey(0)
    action = f32([[0.0, 0.9], [-0.95, 0.3]] * 256)
    # No noise: the actions, clipped to the bounds.
    same = losses.target_policy_smoothing(action, key, noise_std=0.0, noise_clip=0.5)
    np.testing.assert_array_equal(same, action)
    smoothed = losses.target_policy_smoothing(action, key, noise_std=0.2, noise_clip=0.5)
    noise = np.clip(0.2 * np.asarray(jax.random.normal(key, action.shape)), -0.5, 0.5)
    _close(smoothed, np.clip(np.asarray(action) + noise, -1.0, 1.0), 1e-6)
    # Noise is bounded by the clip and actions by the bounds; clipping does bind here.
    big = losses.target_policy_smoothing(action, key, noise_std=10.0, noise_clip=0.5)
    assert np.all(np.abs(np.asarray(big) - np.asarray(action)) <= 0.5 + 1e-6)
    assert np.all(np.abs(np.asarray(big)) <= 1.0) and np.any(np.asarray(big) == 1.0)
    # Per-dimension bounds `[D]`.
    bounded = losses.target_policy_smoothing(action, key, noise_std=10.0, noise_clip=0.5,
                                             low=f32([-0.1, 0.0]), high=f32([0.1, 2.0]))
    assert np.all(np.asarray(bounded)[:, 0] >= -0.1) and np.all(np.asarray(bounded)[:, 0] <= 0.1)
    assert np.any(np.asarray(bounded)[:, 1] > 1.0)
    for bad in ({"noise_std": -0.1, "noise_clip": 0.5}, {"noise_std": 0.2, "noise_clip": -1}):
        with pytest.raises(ValueError, match="noise_"):
            losses.target_policy_smoothing(action, key, **bad)


# ----------------------------------------------------------------------------
# A plain Python loop as the slow reference
# ----------------------------------------------------------------------------


def test_all_match_python_loop_reference_on_random_batch():
    rng = np.random.default_rng(0)
    n, k, d = 11, 2, 3
    r_t = rng.normal(size=n)
    terminated_t = rng.random(n) < 0.3
    q_t = rng.normal(size=(k, n)) * 3
    log_prob_t = rng.normal(size=n)
    q_tm1 = rng.normal(size=(k, n)) * 3
    action = rng.normal(size=(n, d))
    dq_da = rng.normal(size=(n, d))
    gamma, alpha, log_alpha, target_entropy = 0.97, 0.3, -0.4, -float(d)

    bellman = [r_t[i] + gamma * (1 - terminated_t[i]) * q_t[0, i] for i in range(n)]
    td3 = [r_t[i] + gamma * (1 - terminated_t[i]) * min(q_t[0, i], q_t[1, i]) for i in range(n)]
    sac = [r_t[i] + gamma * (1 - terminated_t[i])
           * (min(q_t[0, i], q_t[1, i]) - alpha * log_prob_t[i]) for i in range(n)]
    critic = sum(sum(0.5 * (q_tm1[j, i] - td3[i]) ** 2 for i in range(n)) / n for j in range(k))
    dpg = sum(0.5 * sum(dq_da[i, c] ** 2 for c in range(d)) for i in range(n)) / n
    sac_actor = sum(alpha * log_prob_t[i] - min(q_tm1[0, i], q_tm1[1, i]) for i in range(n)) / n
    temperature = -sum(log_alpha * (log_prob_t[i] + target_entropy) for i in range(n)) / n

    tol = 1e-5
    _close(losses.bellman_target(f32(r_t), terminated_t, f32(q_t[0]), gamma=gamma), bellman, tol)
    td3_ours = losses.td3_target(f32(r_t), terminated_t, f32(q_t), gamma=gamma, ensemble_axis=0)
    _close(td3_ours, td3, tol)
    _close(losses.sac_target(f32(r_t), terminated_t, f32(q_t), f32(log_prob_t), gamma=gamma,
                             alpha=alpha, ensemble_axis=0), sac, tol)
    _close(losses.critic_loss(f32(q_tm1), td3_ours, ensemble_axis=0)[0], critic, 1e-4)
    _close(losses.dpg_actor_loss(f32(action), f32(dq_da))[0], dpg, tol)
    _close(losses.sac_actor_loss(f32(log_prob_t), f32(q_tm1), alpha=alpha, ensemble_axis=0)[0],
           sac_actor, tol)
    _close(losses.temperature_loss(f32(log_alpha), f32(log_prob_t),
                                   target_entropy=target_entropy)[0], temperature, tol)


# ----------------------------------------------------------------------------
# Gradient flow with small networks
# ----------------------------------------------------------------------------

OBS_DIM, ACT_DIM, HIDDEN, N = 3, 2, 8, 5


def _init_nets(key):
    k = jax.random.split(key, 6)
    actor = {"w": 0.5 * jax.random.normal(k[0], (OBS_DIM, ACT_DIM)),
             "b": 0.1 * jax.random.normal(k[1], (ACT_DIM,))}
    critic = {"w1": 0.5 * jax.random.normal(k[2], (2, OBS_DIM + ACT_DIM, HIDDEN)),
              "w2": 0.5 * jax.random.normal(k[3], (2, HIDDEN))}
    obs = jax.random.normal(k[4], (N, OBS_DIM))
    return actor, critic, obs


def _mu(actor, obs):
    """Deterministic actor, actions `[N, D]` in (-1, 1)."""
    return jnp.tanh(obs @ actor["w"] + actor["b"][None])


def _q(critic, obs, action):
    """Twin critics, `[2, N]`."""
    x = jnp.concatenate([obs, action], axis=-1)
    h = jnp.tanh(jnp.einsum("nf,kfh->knh", x, critic["w1"]))
    return jnp.einsum("knh,kh->kn", h, critic["w2"])


def _is_zero(tree):
    return all(bool(jnp.all(x == 0)) for x in jax.tree_util.tree_leaves(tree))


def _is_nonzero(tree):
    return all(bool(jnp.any(x != 0)) for x in jax.tree_util.tree_leaves(tree))


def test_dpg_gradient_equals_minus_mean_q_and_leaves_critic_alone():
    actor, critic, obs = _init_nets(jax.random.PRNGKey(1))

    def dpg(actor, critic):
        action = _mu(actor, obs)
        # ∂Q₁/∂a per example (TD3 and DDPG use the first critic).
        dq_da = jax.grad(lambda a: jnp.sum(_q(critic, obs, a)[0]))(action)
        return losses.dpg_actor_loss(action, dq_da)[0]

    def minus_mean_q(actor):
        return -jnp.mean(_q(critic, obs, _mu(actor, obs))[0])

    g_actor, g_critic = jax.jit(jax.grad(dpg, (0, 1)))(actor, critic)
    expected = jax.jit(jax.grad(minus_mean_q))(actor)
    for a, b in zip(jax.tree_util.tree_leaves(g_actor), jax.tree_util.tree_leaves(expected)):
        _close(a, b, 1e-6)
    assert _is_nonzero(g_actor)
    assert _is_zero(g_critic)


def test_critic_loss_sends_no_gradient_into_target_networks():
    _, critic, obs = _init_nets(jax.random.PRNGKey(2))
    target_actor, target_critic, next_obs = _init_nets(jax.random.PRNGKey(3))
    action = jax.random.uniform(jax.random.PRNGKey(4), (N, ACT_DIM), minval=-1, maxval=1)
    r_t, terminated_t = jnp.arange(N, dtype=jnp.float32), jnp.asarray([0, 1, 0, 0, 1], bool)

    def loss(critic, target_actor, target_critic):
        q_t = _q(target_critic, next_obs, _mu(target_actor, next_obs))
        target = losses.td3_target(r_t, terminated_t, q_t, gamma=0.99, ensemble_axis=0)
        return losses.critic_loss(_q(critic, obs, action), target, ensemble_axis=0)[0]

    g_critic, g_target_actor, g_target_critic = jax.jit(jax.grad(loss, (0, 1, 2)))(
        critic, target_actor, target_critic)
    assert _is_nonzero(g_critic)
    assert _is_zero(g_target_actor) and _is_zero(g_target_critic)


def test_sac_actor_and_temperature_gradient_flow():
    actor, critic, obs = _init_nets(jax.random.PRNGKey(5))
    log_std = f32(np.full(ACT_DIM, -0.5))
    from acjax.distributions import TanhGaussian

    def actor_loss(actor, critic, log_alpha):
        dist = TanhGaussian(obs @ actor["w"] + actor["b"][None], log_std)
        action, log_prob = dist.sample_and_log_prob(jax.random.PRNGKey(6))
        q = _q(jax.lax.stop_gradient(critic), obs, action)  # the caller stops the critic
        return losses.sac_actor_loss(log_prob, q, alpha=jnp.exp(log_alpha), ensemble_axis=0)[0]

    log_alpha = f32(-1.0)
    g_actor, g_critic, g_log_alpha = jax.jit(jax.grad(actor_loss, (0, 1, 2)))(
        actor, critic, log_alpha)
    assert _is_nonzero(g_actor)
    assert _is_zero(g_critic)
    _close(g_log_alpha, 0.0)

    def temp_loss(actor, log_alpha):
        dist = TanhGaussian(obs @ actor["w"] + actor["b"][None], log_std)
        _, log_prob = dist.sample_and_log_prob(jax.random.PRNGKey(6))
        return losses.temperature_loss(log_alpha, log_prob, target_entropy=-float(ACT_DIM))[0]

    g_actor, g_log_alpha = jax.jit(jax.grad(temp_loss, (0, 1)))(actor, log_alpha)
    assert _is_zero(g_actor)
    assert float(g_log_alpha) != 0.0


# ----------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------


def test_bad_hyperparameters_and_shapes():
    with pytest.raises(ValueError, match=r"polyak_update: tau=1\.5 must lie in \[0\.0, 1\.0\]"):
        losses.polyak_update({"w": f32(1.0)}, {"w": f32(0.0)}, tau=1.5)
    with pytest.raises(TypeError, match=r"\['step'\] has dtype int32; pass floating-point"):
        losses.polyak_update({"step": jnp.int32(1)}, {"step": jnp.int32(0)}, tau=0.5)
    with pytest.raises(ValueError, match=r"online_params\['w'\] \(2,\), "
                                         r"target_params\['w'\] \(3,\)"):
        losses.polyak_update({"w": jnp.zeros(2)}, {"w": jnp.zeros(3)}, tau=0.5)
    with pytest.raises(ValueError, match="dq_da_clipping"):
        losses.dpg_actor_loss(f32([[1.0]]), f32([[1.0]]), dq_da_clipping=0.0)
    with pytest.raises(ValueError, match=r"q_t \(1, 1\).*bellman_target takes one critic"):
        losses.bellman_target(f32([1.0]), jnp.asarray([False]), f32([[1.0]]), gamma=0.9)
    with pytest.raises(ValueError, match=r"q_tm1 without ensemble_axis=0 \(2,\), "
                                         r"target \(3,\)"):  # critics and target disagree
        losses.critic_loss(f32([[1.0, 2.0]]), f32([1.0, 2.0, 3.0]), ensemble_axis=0)
    with pytest.raises(ValueError, match=r"q_tm1 \(2, 3\), target \(3,\); with K critics "
                                         r"pass ensemble_axis"):  # the axis is never guessed
        losses.critic_loss(jnp.zeros((2, 3)), jnp.zeros(3))
    with pytest.raises(ValueError, match=r"ensemble_axis=2 is not an axis of q_values"):
        losses.sac_actor_loss(jnp.zeros(3), jnp.zeros((2, 3)), alpha=0.1, ensemble_axis=2)
    with pytest.raises(TypeError, match=r"ensemble_axis='0'"):
        losses.td3_target(jnp.zeros(3), jnp.zeros(3, bool), jnp.zeros((2, 3)), gamma=0.9,
                          ensemble_axis="0")
    with pytest.raises(ValueError, match=r"log_alpha has shape \(1,\)"):
        losses.temperature_loss(f32([0.0]), f32([1.0]), target_entropy=-1.0)
    with pytest.raises(TypeError, match=r"critic_loss: target has dtype int32"):
        losses.critic_loss(jnp.zeros(3), jnp.zeros(3, jnp.int32))
    with pytest.raises(ValueError, match=r"dpg_actor_loss: .*action \(3, 2\), dq_da \(3, 1\)"):
        losses.dpg_actor_loss(jnp.zeros((3, 2)), jnp.zeros((3, 1)))


# ----------------------------------------------------------------------------
# The library contract: batch shapes, axes, dtypes, weights, keywords, metric names
# ----------------------------------------------------------------------------

K, D = 2, 3


def _np_batch(seed=0, shape=(4, 5)):
    """Off-policy arrays with batch shape `shape`, critics on axis 0, actions last."""
    rng = np.random.default_rng(seed)
    return {
        "r_t": rng.normal(size=shape),
        "terminated_t": rng.random(shape) < 0.3,
        "q_t": 3 * rng.normal(size=(K, *shape)),
        "log_prob_t": rng.normal(size=shape),
        "q_tm1": 3 * rng.normal(size=(K, *shape)),
        "target": rng.normal(size=shape),
        "action": np.tanh(rng.normal(size=(*shape, D))),
        "dq_da": rng.normal(size=(*shape, D)),
        "log_prob": rng.normal(size=shape),
        "log_alpha": np.asarray(-0.4),
    }


def _as32(x):
    return {k: v if v.dtype == bool else f32(v) for k, v in x.items()}


# name -> (call(x, **kw) -> (loss, metrics), numpy per-sample loss, the loss's metric).
LOSS_CASES = {
    "critic_loss": (
        lambda x, **kw: losses.critic_loss(x["q_tm1"], x["target"], ensemble_axis=0, **kw),
        lambda x: np.sum(0.5 * (x["q_tm1"] - x["target"][None]) ** 2, axis=0), "critic_loss"),
    "critic_loss_single": (
        lambda x, **kw: losses.critic_loss(x["q_tm1"][0], x["target"], **kw),
        lambda x: 0.5 * (x["q_tm1"][0] - x["target"]) ** 2, "critic_loss"),
    "dpg_actor_loss": (
        lambda x, **kw: losses.dpg_actor_loss(x["action"], x["dq_da"], **kw),
        lambda x: 0.5 * np.sum(x["dq_da"] ** 2, axis=-1), "dpg_loss"),
    "dpg_actor_loss_clipped": (
        lambda x, **kw: losses.dpg_actor_loss(x["action"], x["dq_da"], dq_da_clipping=1.0, **kw),
        lambda x: 0.5 * np.minimum(np.sum(x["dq_da"] ** 2, axis=-1), 1.0), "dpg_loss"),
    "sac_actor_loss": (
        lambda x, **kw: losses.sac_actor_loss(x["log_prob"], x["q_tm1"], alpha=0.3,
                                              ensemble_axis=0, **kw),
        lambda x: 0.3 * x["log_prob"] - np.min(x["q_tm1"], axis=0), "sac_actor_loss"),
    "temperature_loss": (
        lambda x, **kw: losses.temperature_loss(x["log_alpha"], x["log_prob"],
                                                target_entropy=-2.0, **kw),
        lambda x: -x["log_alpha"] * (x["log_prob"] - 2.0), "temperature_loss"),
}

TARGETS = {
    "bellman_target": lambda x: losses.bellman_target(
        x["r_t"], x["terminated_t"], x["q_t"][0], gamma=0.9),
    "td3_target": lambda x: losses.td3_target(
        x["r_t"], x["terminated_t"], x["q_t"], gamma=0.9, ensemble_axis=0),
    "sac_target": lambda x: losses.sac_target(
        x["r_t"], x["terminated_t"], x["q_t"], x["log_prob_t"], gamma=0.9, alpha=0.2,
        ensemble_axis=0),
}


def _flatten(x, shape=(4, 5)):
    """The same arrays with the batch `shape` flattened (critics stay first, actions last)."""
    n = int(np.prod(shape))
    out = {}
    for k, v in x.items():
        if k in ("q_t", "q_tm1"):
            out[k] = v.reshape(K, n)
        elif k in ("action", "dq_da"):
            out[k] = v.reshape(n, D)
        elif k == "log_alpha":
            out[k] = v
        else:
            out[k] = v.reshape(n)
    return out


def _select(x, keep):
    """The samples where the batch mask `keep` is True (flattened)."""
    out = {}
    for k, v in x.items():
        if k in ("q_t", "q_tm1"):
            out[k] = v[:, keep]
        elif k == "log_alpha":
            out[k] = v
        else:
            out[k] = v[keep]
    return out


def _metrics_close(got, expected, tol=1e-6):
    assert set(got) == set(expected), set(got) ^ set(expected)
    for key in expected:
        _close(got[key], expected[key], tol)


def test_td3_target_square_critics_on_axis_1_take_the_min_over_that_axis():
    n = 3  # N == K: the axis cannot be told from the shape
    rng = np.random.default_rng(0)
    q_t = rng.normal(size=(n, n))
    r_t = rng.normal(size=n)
    terminated_t = np.array([False, True, False])
    expected = r_t + 0.9 * np.where(terminated_t, 0.0, q_t.min(axis=1))
    _close(losses.td3_target(f32(r_t), terminated_t, f32(q_t), gamma=0.9, ensemble_axis=1),
           expected)
    _close(losses.sac_target(f32(r_t), terminated_t, f32(q_t), jnp.zeros(n), gamma=0.9,
                             alpha=0.5, ensemble_axis=1), expected)
    assert not np.allclose(expected, r_t + 0.9 * np.where(terminated_t, 0.0, q_t.min(axis=0)))
    _close(losses.critic_loss(f32(q_t), f32(r_t), ensemble_axis=1)[0],
           np.sum(np.mean(0.5 * (q_t - r_t[:, None]) ** 2, axis=0)))
    _close(losses.sac_actor_loss(f32(r_t), f32(q_t), alpha=0.5, ensemble_axis=1)[0],
           np.mean(0.5 * r_t - q_t.min(axis=1)))


def test_terminated_steps_ignore_nan_next_values():
    r_t = f32([1.0, 2.0])
    terminated_t = jnp.asarray([False, True])
    q_t = f32([[3.0, np.nan], [4.0, np.inf]])
    log_prob_t = f32([0.5, np.nan])
    _close(losses.bellman_target(r_t, terminated_t, q_t[0], gamma=0.5), [2.5, 2.0])
    _close(losses.td3_target(r_t, terminated_t, q_t, gamma=0.5, ensemble_axis=0), [2.5, 2.0])
    _close(losses.sac_target(r_t, terminated_t, q_t, log_prob_t, gamma=0.5, alpha=0.2,
                             ensemble_axis=0), [1.0 + 0.5 * (3.0 - 0.1), 2.0])


def test_targets_match_rlax_td_learning():
    x = _as32(_np_batch(seed=1, shape=(16,)))
    q_tm1 = x["q_tm1"][0]
    discount = 0.9 * (1.0 - x["terminated_t"].astype(jnp.float32))
    td = jax.vmap(rlax.td_learning)(q_tm1, x["r_t"], discount, x["q_t"][0])
    _close(losses.bellman_target(x["r_t"], x["terminated_t"], x["q_t"][0], gamma=0.9) - q_tm1,
           td, 1e-5)
    # critic_loss of one critic is the mean of rlax's l2_loss of the TD errors.
    target = losses.bellman_target(x["r_t"], x["terminated_t"], x["q_t"][0], gamma=0.9)
    _close(losses.critic_loss(q_tm1, target)[0], jnp.mean(rlax.l2_loss(td)), 1e-5)


def test_numpy_float64_inputs_give_float32_without_warning():
    assert not jax.config.jax_enable_x64
    x = _np_batch()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name, (call, _, _) in LOSS_CASES.items():
            loss, metrics = call(x)
            assert loss.dtype == jnp.float32, name
            assert all(v.dtype == jnp.float32 for v in metrics.values()), name
            _close(loss, call(_as32(x))[0])
        for name, target in TARGETS.items():
            got = target(x)
            assert got.dtype == jnp.float32, name
            _close(got, target(_as32(x)))
        smoothed = losses.target_policy_smoothing(x["action"], jax.random.PRNGKey(0),
                                                  noise_std=np.float64(0.2), noise_clip=0.5)
        assert smoothed.dtype == jnp.float32
        new = losses.polyak_update({"w": f32([1.0])}, {"w": f32([0.0])}, tau=np.float64(0.5))
        assert new["w"].dtype == jnp.float32


@pytest.mark.parametrize("name", sorted(LOSS_CASES))
@pytest.mark.parametrize("dtypes", [(jnp.bfloat16, jnp.float32), (jnp.float16, jnp.float32),
                                    (jnp.float16, jnp.float16), (jnp.float32, jnp.bfloat16)],
                         ids=["bf16+f32", "f16+f32", "f16", "f32+bf16"])
def test_mixed_dtypes_promote_the_loss_and_metrics_are_float32(name, dtypes):
    first, rest = dtypes
    call, _, _ = LOSS_CASES[name]
    x = _np_batch()
    mixed = {k: jnp.asarray(v, first if k in ("q_tm1", "action", "log_alpha") else rest)
             for k, v in x.items() if k != "terminated_t"}
    loss, metrics = call(mixed)
    assert loss.dtype == jnp.promote_types(first, rest), (loss.dtype, first, rest)
    for key, value in metrics.items():
        assert value.dtype == jnp.float32, (key, value.dtype)
    _close(loss, call(_as32(x))[0], 0.2 * max(1.0, abs(float(call(_as32(x))[0]))))


def test_targets_mixed_dtypes_promote():
    x = _np_batch()
    x16 = {k: jnp.asarray(v, jnp.bfloat16) if v.dtype != bool else v for k, v in x.items()}
    x16["r_t"] = f32(x["r_t"])
    for name, target in TARGETS.items():
        assert target(x16).dtype == jnp.float32, name
    x16["r_t"] = jnp.asarray(x["r_t"], jnp.bfloat16)
    for name, target in TARGETS.items():
        assert target(x16).dtype == jnp.bfloat16, name


def test_time_batch_shapes_equal_their_flattened_results():
    x = _as32(_np_batch(seed=2, shape=(4, 5)))
    flat = _flatten(x)
    for name, (call, _, _) in LOSS_CASES.items():
        loss, metrics = call(x)
        flat_loss, flat_metrics = call(flat)
        _close(loss, flat_loss, 1e-5)
        _metrics_close(metrics, flat_metrics, 1e-5)
        none = call(x, reduction="none")[0]
        assert none.shape == (4, 5), name
        _close(none.reshape(-1), call(flat, reduction="none")[0], 1e-6)
    for name, target in TARGETS.items():
        got = target(x)
        assert got.shape == (4, 5), name
        _close(got.reshape(-1), target(flat), 1e-6)
    # The critics on the last axis, [T, B, K].
    q_last = jnp.moveaxis(x["q_tm1"], 0, -1)
    _close(losses.critic_loss(q_last, x["target"], ensemble_axis=-1)[0],
           losses.critic_loss(flat["q_tm1"], flat["target"], ensemble_axis=0)[0], 1e-5)
    _close(losses.td3_target(x["r_t"], x["terminated_t"], jnp.moveaxis(x["q_t"], 0, 2),
                             gamma=0.9, ensemble_axis=2).reshape(-1), TARGETS["td3_target"](flat))
    key = jax.random.PRNGKey(3)
    smoothed = losses.target_policy_smoothing(x["action"], key, noise_std=0.2, noise_clip=0.5)
    assert smoothed.shape == (4, 5, D)
    noise = np.clip(0.2 * np.asarray(jax.random.normal(key, (4, 5, D))), -0.5, 0.5)
    _close(smoothed, np.clip(np.asarray(x["action"]) + noise, -1.0, 1.0))


@pytest.mark.parametrize("name", sorted(LOSS_CASES))
def test_weights_of_ones_change_nothing(name):
    call, _, _ = LOSS_CASES[name]
    x = _as32(_np_batch(seed=3))
    loss, metrics = call(x)
    for weights in (jnp.ones((4, 5)), np.ones((4, 1)), 1.0):
        got, got_metrics = call(x, weights=weights)
        _close(got, loss, 1e-6)
        _metrics_close(got_metrics, metrics, 1e-6)


@pytest.mark.parametrize("name", sorted(LOSS_CASES))
def test_zero_weights_remove_their_samples(name):
    call, _, _ = LOSS_CASES[name]
    x = _np_batch(seed=4)
    keep = np.random.default_rng(5).random((4, 5)) < 0.6
    assert 0 < keep.sum() < keep.size
    loss, metrics = call(_as32(x), weights=keep.astype(np.float32))
    kept, kept_metrics = call(_as32(_select(x, keep)))
    _close(loss, kept, 1e-5)
    _metrics_close(metrics, kept_metrics, 1e-5)
    _close(call(_as32(x), weights=keep)[0], kept, 1e-5)


@pytest.mark.parametrize("name", sorted(LOSS_CASES))
def test_reductions_match_numpy(name):
    call, per_sample, metric = LOSS_CASES[name]
    x = _np_batch(seed=6)
    w = np.random.default_rng(7).uniform(0.5, 2.0, size=(4, 5))
    expected = per_sample(x)
    none, metrics = call(_as32(x), weights=w, reduction="none")
    assert none.shape == (4, 5)
    _close(none, w * expected, 1e-5)
    total, sum_metrics = call(_as32(x), weights=w, reduction="sum")
    _close(total, np.sum(w * expected), 1e-4)
    mean, mean_metrics = call(_as32(x), weights=w)
    _close(mean, np.sum(w * expected) / np.sum(w), 1e-5)
    for m in (metrics, sum_metrics):  # metrics are weighted means whatever the reduction
        _metrics_close(m, mean_metrics, 1e-5)
    _close(mean_metrics[metric], mean, 1e-6)
    _close(call(_as32(x), reduction="none")[0], expected, 1e-5)
    _close(call(_as32(x), reduction="sum")[0], expected.sum(), 1e-4)
    zero, zero_metrics = call(_as32(x), weights=np.zeros((4, 5)))
    assert float(zero) == 0.0 and all(np.isfinite(v) for v in zero_metrics.values())


def test_weighted_metrics_against_numpy():
    x = _np_batch(seed=8)
    w = np.random.default_rng(9).uniform(0.0, 2.0, size=(4, 5))

    def mean(a):
        return np.sum(np.broadcast_to(w, a.shape) * a) / np.sum(np.broadcast_to(w, a.shape))

    _, m = losses.critic_loss(f32(x["q_tm1"]), f32(x["target"]), ensemble_axis=0, weights=w)
    _close(m["critic_q_mean"], mean(x["q_tm1"]), 1e-5)
    _close(m["critic_target_mean"], mean(x["target"]), 1e-5)
    _close(m["critic_td_error_abs"], mean(np.abs(x["q_tm1"] - x["target"][None])), 1e-5)
    _, m = losses.dpg_actor_loss(f32(x["action"]), f32(x["dq_da"]), weights=w)
    _close(m["dpg_dq_da_norm"], mean(np.linalg.norm(x["dq_da"], axis=-1)), 1e-5)
    _, m = losses.sac_actor_loss(f32(x["log_prob"]), f32(x["q_tm1"]), alpha=0.3,
                                 ensemble_axis=0, weights=w)
    _close(m["sac_actor_neg_log_prob"], -mean(x["log_prob"]), 1e-5)
    _close(m["sac_actor_q_mean"], mean(x["q_tm1"].min(axis=0)), 1e-5)
    _close(m["sac_actor_alpha"], 0.3)
    _, m = losses.temperature_loss(f32(x["log_alpha"]), f32(x["log_prob"]), target_entropy=-2.0,
                                   weights=w)
    _close(m["temperature_neg_log_prob"], -mean(x["log_prob"]), 1e-5)


def test_hyperparameters_and_ensemble_axis_are_keyword_only():
    x = _as32(_np_batch(shape=(3,)))
    r, d, q, lp = x["r_t"], x["terminated_t"], x["q_t"], x["log_prob_t"]
    for call in (
        lambda: losses.bellman_target(r, d, q[0], 0.99),
        lambda: losses.td3_target(r, d, q, 0.99, 0),
        lambda: losses.td3_target(r, d, q, gamma=0.99),  # ensemble_axis is required
        lambda: losses.sac_target(r, d, q, lp, 0.99, 0.1, 0),
        lambda: losses.sac_target(r, d, q, lp, gamma=0.99, alpha=0.1),
        lambda: losses.sac_actor_loss(lp, q, 0.5),
        lambda: losses.sac_actor_loss(lp, q, alpha=0.5),
        lambda: losses.critic_loss(q, r, 0),
        lambda: losses.dpg_actor_loss(x["action"], x["dq_da"], 1.0),
        lambda: losses.temperature_loss(x["log_alpha"], lp, -1.0),
        lambda: losses.polyak_update({"w": r}, {"w": r}, 0.5),
        lambda: losses.target_policy_smoothing(x["action"], jax.random.PRNGKey(0), 0.2, 0.5),
    ):
        with pytest.raises(TypeError):
            call()


def test_out_of_range_hyperparameters_and_empty_batches_raise():
    x = _as32(_np_batch(shape=(3,)))
    r, d, q, lp = x["r_t"], x["terminated_t"], x["q_t"], x["log_prob_t"]
    for match, call in (
        (r"bellman_target: gamma=1\.5", lambda: losses.bellman_target(r, d, q[0], gamma=1.5)),
        (r"td3_target: gamma=-0\.1",
         lambda: losses.td3_target(r, d, q, gamma=-0.1, ensemble_axis=0)),
        (r"sac_target: alpha=-1\.0",
         lambda: losses.sac_target(r, d, q, lp, gamma=0.9, alpha=-1.0, ensemble_axis=0)),
        (r"sac_actor_loss: alpha=-0\.5",
         lambda: losses.sac_actor_loss(lp, q, alpha=-0.5, ensemble_axis=0)),
        (r"polyak_update: tau=-0\.5", lambda: losses.polyak_update({}, {}, tau=-0.5)),
        (r"noise_std=-0\.1", lambda: losses.target_policy_smoothing(
            x["action"], jax.random.PRNGKey(0), noise_std=-0.1, noise_clip=0.5)),
        (r"critic_loss: reduction='avg'", lambda: losses.critic_loss(q[0], r, reduction="avg")),
    ):
        with pytest.raises(ValueError, match=match):
            call()
    # Traced hyperparameters pass unchecked.
    jax.jit(lambda g: losses.bellman_target(r, d, q[0], gamma=g))(f32(1.5))
    empty = _as32(_np_batch(shape=(0,)))
    for call, _, _ in LOSS_CASES.values():
        with pytest.raises(ValueError, match=r"no element; pass a non-empty batch"):
            call(empty)
    for target in TARGETS.values():
        with pytest.raises(ValueError, match=r"no element; pass a non-empty batch"):
            target(empty)


# Every function that returns metrics, with the prefix its metric names start with.
PREFIXES = {
    "policy_gradient_loss": "pg_", "ppo_clip_loss": "clip_", "value_loss": "value_",
    "entropy_bonus": "entropy_", "critic_loss": "critic_", "dpg_actor_loss": "dpg_",
    "sac_actor_loss": "sac_actor_", "temperature_loss": "temperature_",
}


def _all_metrics():
    """name -> metrics of every loss (value_loss with clipping, so all its names appear)."""
    x = _as32(_np_batch(shape=(6,)))
    a = {k: jax.random.normal(jax.random.PRNGKey(i), (6,)) for i, k in enumerate(
        ("log_probs", "old_log_probs", "advantages", "values", "old_values", "targets",
         "entropies"))}
    terms = {
        "policy_gradient_loss": losses.policy_gradient_loss(a["log_probs"], a["advantages"]),
        "ppo_clip_loss": losses.ppo_clip_loss(a["log_probs"], a["old_log_probs"],
                                              a["advantages"], clip_eps=0.2),
        "value_loss": losses.value_loss(a["values"], a["targets"], a["old_values"],
                                        clip_eps=0.2),
        "entropy_bonus": losses.entropy_bonus(a["entropies"]),
        "critic_loss": LOSS_CASES["critic_loss"][0](x),
        "dpg_actor_loss": LOSS_CASES["dpg_actor_loss"][0](x),
        "sac_actor_loss": LOSS_CASES["sac_actor_loss"][0](x),
        "temperature_loss": LOSS_CASES["temperature_loss"][0](x),
    }
    totals = {
        "a2c_loss": losses.a2c_loss(
            **{k: a[k] for k in ("log_probs", "advantages", "values", "targets", "entropies")},
            value_coef=0.5, entropy_coef=0.01),
        "ppo_loss": losses.ppo_loss(**a, clip_eps=0.2, value_coef=0.5, entropy_coef=0.01,
                                    value_clip_eps=0.2),
    }
    return {k: m for k, (_, m) in terms.items()}, {k: m for k, (_, m) in totals.items()}


def test_metric_names_start_with_their_prefix_and_never_collide():
    terms, totals = _all_metrics()
    assert set(terms) == set(PREFIXES)
    for name, metrics in terms.items():
        for key in metrics:
            assert key.startswith(PREFIXES[name]), (name, key)
        assert f"{PREFIXES[name].rstrip('_')}_loss" in metrics or name == "entropy_bonus"
    # SAC's actor and temperature metrics merge without collision (as does every pair).
    assert not set(terms["sac_actor_loss"]) & set(terms["temperature_loss"])
    names = sorted(terms)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            assert not set(terms[first]) & set(terms[second]), (first, second)
    # Totals merge their terms' metrics and add their own.
    assert set(totals["a2c_loss"]) == (set(terms["policy_gradient_loss"])
                                       | {"value_loss", "value_explained_variance"}
                                       | set(terms["entropy_bonus"]) | {"a2c_loss"})
    assert set(totals["ppo_loss"]) == (set(terms["ppo_clip_loss"]) | set(terms["value_loss"])
                                       | set(terms["entropy_bonus"]) | {"ppo_loss"})
    # The names of the contract's table.
    assert set(terms["sac_actor_loss"]) == {"sac_actor_loss", "sac_actor_neg_log_prob",
                                            "sac_actor_alpha", "sac_actor_q_mean"}
    assert set(terms["temperature_loss"]) == {"temperature_loss", "temperature_alpha",
                                              "temperature_neg_log_prob"}
    for metrics in (*terms.values(), *totals.values()):
        for key, value in metrics.items():
            assert value.shape == () and value.dtype == jnp.float32, key
