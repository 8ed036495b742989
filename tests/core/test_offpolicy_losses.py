"""Tests for the off-policy section of `acjax.losses` (DDPG, TD3, SAC building blocks)."""

import math

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
    terminated_t = f32([0.0, 1.0, 0.0, 1.0])
    q_t = f32([10.0, 10.0, -5.0, 4.0])
    # [1 + 0.9 * 10, 2, 3 + 0.9 * -5, -1] = [10, 2, -1.5, -1].
    expected = [10.0, 2.0, -1.5, -1.0]
    _close(losses.bellman_target(r_t, terminated_t, 0.9, q_t), expected)
    _close(losses.bellman_target(r_t, terminated_t.astype(bool), 0.9, q_t), expected)
    _close(jax.jit(losses.bellman_target)(r_t, terminated_t, f32(0.9), q_t), expected)
    # A per-transition discount (e.g. γⁿ of n-step transitions).
    _close(losses.bellman_target(r_t, terminated_t, f32([0.5, 0.5, 0.1, 0.1]), q_t),
           [6.0, 2.0, 2.5, -1.0])


def test_truncated_transitions_bootstrap_terminated_do_not():
    # Two transitions with the same reward and next-state value: the first was cut off by a
    # time limit (truncated, not terminated): it bootstraps from the true next observation's
    # value. The second ended in a terminal state: it does not.
    r_t = f32([1.0, 1.0])
    truncated_t = np.array([1.0, 0.0])  # not an argument: only termination matters
    terminated_t = f32([0.0, 1.0])
    q_t = f32([5.0, 5.0])
    target = losses.bellman_target(r_t, terminated_t, 0.99, q_t)
    _close(target, [1.0 + 0.99 * 5.0, 1.0])
    # Treating `done = terminated or truncated` as termination would lose the bootstrap.
    done = jnp.maximum(terminated_t, f32(truncated_t))
    assert not np.allclose(losses.bellman_target(r_t, done, 0.99, q_t), target)
    # The same holds for the TD3 and SAC targets.
    q2 = jnp.stack([q_t, q_t + 1.0])
    _close(losses.td3_target(r_t, terminated_t, 0.99, q2), [1.0 + 0.99 * 5.0, 1.0])
    _close(losses.sac_target(r_t, terminated_t, 0.99, q2, f32([0.0, 7.0]), 0.1),
           [1.0 + 0.99 * 5.0, 1.0])


def test_td3_target_hand_computed():
    q_t = f32([[1.0, 5.0, -2.0], [3.0, 4.0, -1.0]])  # min over critics: [1, 4, -2]
    r_t = f32([0.0, 1.0, 2.0])
    terminated_t = f32([0.0, 0.0, 1.0])
    # [0 + 0.5 * 1, 1 + 0.5 * 4, 2] = [0.5, 3, 2].
    _close(losses.td3_target(r_t, terminated_t, 0.5, q_t), [0.5, 3.0, 2.0])
    # One critic `[N]` is its own minimum.
    _close(losses.td3_target(r_t, terminated_t, 0.5, q_t[1]), [1.5, 3.0, 2.0])


def test_sac_target_hand_computed():
    q_t = f32([[1.0, 5.0, -2.0], [3.0, 4.0, -1.0]])  # min: [1, 4, -2]
    r_t = f32([0.0, 1.0, 2.0])
    terminated_t = f32([0.0, 0.0, 1.0])
    log_prob_t = f32([-1.0, 0.5, 2.0])
    # Soft values min q - 0.2 log π = [1.2, 3.9, -2.4];
    # targets [0 + 0.5 * 1.2, 1 + 0.5 * 3.9, 2] = [0.6, 2.95, 2].
    _close(losses.sac_target(r_t, terminated_t, 0.5, q_t, log_prob_t, 0.2), [0.6, 2.95, 2.0])
    # α = 0 is TD3's target (without smoothing).
    _close(losses.sac_target(r_t, terminated_t, 0.5, q_t, log_prob_t, 0.0),
           losses.td3_target(r_t, terminated_t, 0.5, q_t))
    # α may be traced and vmapped over (a sweep).
    alphas = f32([0.0, 0.2])
    swept = jax.vmap(lambda a: losses.sac_target(r_t, terminated_t, 0.5, q_t, log_prob_t, a))(
        alphas)
    _close(swept, [[0.5, 3.0, 2.0], [0.6, 2.95, 2.0]])


# ----------------------------------------------------------------------------
# Losses: hand-computed values
# ----------------------------------------------------------------------------


def test_critic_loss_hand_computed_twin_and_single():
    q = f32([[1.0, 2.0, 3.0], [0.0, 2.0, 5.0]])
    y = f32([1.0, 1.0, 1.0])
    # Critic 1: errors [0, 1, 2], ½ mean sq = ½ 5/3 = 5/6. Critic 2: errors [-1, 1, 4],
    # ½ mean sq = ½ 18/3 = 3. Sum: 23/6.
    loss, metrics = losses.critic_loss(q, y)
    _close(loss, 23.0 / 6.0)
    assert _is_scalar_dict(metrics, ["critic_loss", "q_mean", "target_mean", "td_error_abs"])
    _close(metrics["critic_loss"], 23.0 / 6.0)
    _close(metrics["q_mean"], 13.0 / 6.0)
    _close(metrics["target_mean"], 1.0)
    _close(metrics["td_error_abs"], 9.0 / 6.0)
    # One critic: its own ½ MSE.
    _close(losses.critic_loss(q[0], y)[0], 5.0 / 6.0)
    # ∂L/∂q_k = (q_k - y) / N for each critic; the target gets nothing.
    grad_q, grad_y = jax.jit(jax.grad(lambda q, y: losses.critic_loss(q, y)[0], (0, 1)))(q, y)
    _close(grad_q, [[0.0, 1 / 3, 2 / 3], [-1 / 3, 1 / 3, 4 / 3]])
    _close(grad_y, np.zeros(3))


def test_dpg_actor_loss_hand_computed():
    action = f32([[0.5, -0.5], [0.0, 1.0]])
    dq_da = f32([[1.0, 2.0], [0.0, -2.0]])
    # ½ |dq_da|² per example: [2.5, 2]; mean 2.25.
    loss, metrics = losses.dpg_actor_loss(action, dq_da)
    _close(loss, 2.25)
    assert _is_scalar_dict(metrics, ["actor_loss", "dq_da_norm"])
    _close(metrics["dq_da_norm"], (math.sqrt(5.0) + 2.0) / 2.0)
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
    loss, metrics = losses.sac_actor_loss(log_prob, q, 0.5)
    _close(loss, -1.625)
    assert _is_scalar_dict(metrics, ["actor_loss", "entropy", "alpha"])
    _close(metrics["entropy"], 0.25)
    _close(metrics["alpha"], 0.5)
    _close(metrics["q_policy_mean"], 1.5)
    # ∂L/∂log π = α / N; ∂L/∂q = -1/N at each minimum, 0 elsewhere; α gets nothing.
    g_lp, g_q, g_log_alpha = jax.grad(
        lambda lp, q, la: losses.sac_actor_loss(lp, q, jnp.exp(la))[0], (0, 1, 2))(
        log_prob, q, f32(math.log(0.5)))
    _close(g_lp, [0.25, 0.25])
    _close(g_q, [[-0.5, 0.0], [0.0, -0.5]])
    _close(g_log_alpha, 0.0)
    # A single critic `[N]`.
    _close(losses.sac_actor_loss(log_prob, q[0], 0.5)[0], (-1.5 + 0.25 - 3.0) / 2.0)


def test_temperature_loss_hand_computed():
    log_alpha = f32(math.log(0.5))
    log_prob = f32([-1.0, 0.5])
    # sg(log π + H̄) with H̄ = -1: [-2, -0.5], mean -1.25; loss = 1.25 log α.
    loss, metrics = losses.temperature_loss(log_alpha, log_prob, -1.0)
    _close(loss, 1.25 * math.log(0.5))
    assert _is_scalar_dict(metrics, ["alpha_loss", "alpha"])
    _close(metrics["alpha"], 0.5)
    # ∂L/∂log α = entropy estimate - H̄ = 0.25 + 1 = 1.25 (> 0: α shrinks, the policy is
    # more random than the target); log π gets nothing.
    g_la, g_lp = jax.grad(lambda la, lp: losses.temperature_loss(la, lp, -1.0)[0], (0, 1))(
        log_alpha, log_prob)
    _close(g_la, 1.25)
    _close(g_lp, [0.0, 0.0])
    # Below the target entropy the gradient has the other sign: α grows.
    _close(jax.grad(lambda la: losses.temperature_loss(la, log_prob, 3.0)[0])(log_alpha), -2.75)


def test_polyak_update_hand_and_limits():
    online = {"w": f32([1.0, 2.0]), "b": f32(3.0)}
    target = {"w": f32([0.0, 0.0]), "b": f32(-1.0)}
    new = losses.polyak_update(online, target, 0.1)
    _close(new["w"], [0.1, 0.2])
    _close(new["b"], 0.1 * 3.0 + 0.9 * -1.0)
    for leaf_new, leaf_online in zip(jax.tree_util.tree_leaves(losses.polyak_update(
            online, target, 1.0)), jax.tree_util.tree_leaves(online)):
        np.testing.assert_array_equal(leaf_new, leaf_online)
    for leaf_new, leaf_target in zip(jax.tree_util.tree_leaves(losses.polyak_update(
            online, target, 0.0)), jax.tree_util.tree_leaves(target)):
        np.testing.assert_array_equal(leaf_new, leaf_target)
    # τ traced under jit; dtypes kept.
    new = jax.jit(losses.polyak_update)(online, target, f32(0.5))
    _close(new["w"], [0.5, 1.0])
    assert new["w"].dtype == jnp.float32
    mixed = losses.polyak_update({"x": jnp.ones(2, jnp.float32)},
                                 {"x": jnp.zeros(2, jnp.bfloat16)}, 0.5)
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
    terminated_t = (rng.random(n) < 0.3).astype(np.float64)
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
    _close(losses.bellman_target(f32(r_t), f32(terminated_t), gamma, f32(q_t[0])), bellman, tol)
    td3_ours = losses.td3_target(f32(r_t), f32(terminated_t), gamma, f32(q_t))
    _close(td3_ours, td3, tol)
    _close(losses.sac_target(f32(r_t), f32(terminated_t), gamma, f32(q_t), f32(log_prob_t),
                             alpha), sac, tol)
    _close(losses.critic_loss(f32(q_tm1), td3_ours)[0], critic, 1e-4)
    _close(losses.dpg_actor_loss(f32(action), f32(dq_da))[0], dpg, tol)
    _close(losses.sac_actor_loss(f32(log_prob_t), f32(q_tm1), alpha)[0], sac_actor, tol)
    _close(losses.temperature_loss(f32(log_alpha), f32(log_prob_t), target_entropy)[0],
           temperature, tol)


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
    r_t, terminated_t = jnp.arange(N, dtype=jnp.float32), f32([0, 1, 0, 0, 1])

    def loss(critic, target_actor, target_critic):
        q_t = _q(target_critic, next_obs, _mu(target_actor, next_obs))
        target = losses.td3_target(r_t, terminated_t, 0.99, q_t)
        return losses.critic_loss(_q(critic, obs, action), target)[0]

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
        return losses.sac_actor_loss(log_prob, q, jnp.exp(log_alpha))[0]

    log_alpha = f32(-1.0)
    g_actor, g_critic, g_log_alpha = jax.jit(jax.grad(actor_loss, (0, 1, 2)))(
        actor, critic, log_alpha)
    assert _is_nonzero(g_actor)
    assert _is_zero(g_critic)
    _close(g_log_alpha, 0.0)

    def temp_loss(actor, log_alpha):
        dist = TanhGaussian(obs @ actor["w"] + actor["b"][None], log_std)
        _, log_prob = dist.sample_and_log_prob(jax.random.PRNGKey(6))
        return losses.temperature_loss(log_alpha, log_prob, -float(ACT_DIM))[0]

    g_actor, g_log_alpha = jax.jit(jax.grad(temp_loss, (0, 1)))(actor, log_alpha)
    assert _is_zero(g_actor)
    assert float(g_log_alpha) != 0.0


# ----------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------


def test_bad_hyperparameters_and_shapes():
    with pytest.raises(ValueError, match="tau"):
        losses.polyak_update({"w": f32(1.0)}, {"w": f32(0.0)}, 1.5)
    with pytest.raises(ValueError, match=r"\['step'\].*float"):
        losses.polyak_update({"step": jnp.int32(1)}, {"step": jnp.int32(0)}, 0.5)
    with pytest.raises(ValueError, match="dq_da_clipping"):
        losses.dpg_actor_loss(f32([[1.0]]), f32([[1.0]]), dq_da_clipping=0.0)
    with pytest.raises(AssertionError):  # rank: q_t must be [N] here
        losses.bellman_target(f32([1.0]), f32([0.0]), 0.9, f32([[1.0]]))
    with pytest.raises(AssertionError):  # critics and target disagree on N
        losses.critic_loss(f32([[1.0, 2.0]]), f32([1.0, 2.0, 3.0]))
    with pytest.raises(AssertionError):  # log α must be a scalar
        losses.temperature_loss(f32([0.0]), f32([1.0]), -1.0)
