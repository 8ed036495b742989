"""Environment construction, wrappers, running statistics and the rollout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acjax import envs
from acjax.agents.rollout import EnvCarry, reset_envs, rollout
from acjax.networks import NetworkConfig, make_actor_critic


def test_unknown_env_names_close_matches():
    with pytest.raises(ValueError, match=r"env='CartPol-v1'.*'CartPole-v1'"):
        envs.make_env("CartPol-v1")
    with pytest.raises(ValueError, match="choose one of"):
        envs.make_env("zzzzzzzzzzzz")


@pytest.mark.parametrize(
    "name, discrete, n",
    [("CartPole-v1", True, 2), ("Pendulum-v1", False, 1), ("Breakout-MinAtar", True, 3)],
)
def test_env_spec(name, discrete, n):
    env, params = envs.make_env(name)
    spec = envs.env_spec(env, params, name)
    assert spec.discrete == discrete and spec.num_actions == n
    assert spec.max_episode_steps == int(params.max_steps_in_episode)


def test_episode_statistics_match_python_loop():
    env, params = envs.make_env("CartPole-v1")
    _, state = env.reset(jax.random.PRNGKey(0), params)
    step = jax.jit(env.step)
    rng = np.random.default_rng(0)
    ret, length, finished = 0.0, 0, []
    for i in range(300):
        action = jnp.int32(rng.integers(2))
        _, state, reward, term, trunc, info = step(jax.random.PRNGKey(i), state, action, params)
        ret += float(reward)
        length += 1
        if bool(term) or bool(trunc):
            assert float(info["episode_return"]) == pytest.approx(ret)
            assert int(info["episode_length"]) == length
            finished.append(ret)
            ret, length = 0.0, 0
    assert len(finished) >= 5


def test_clip_action_clips_to_box():
    env, params = envs.make_env("Pendulum-v1")
    _, state = env.reset(jax.random.PRNGKey(0), params)
    key = jax.random.PRNGKey(1)
    out_big = env.step(key, state, jnp.array([100.0]), params)
    out_max = env.step(key, state, jnp.array([2.0]), params)
    np.testing.assert_allclose(out_big[0], out_max[0])
    np.testing.assert_allclose(out_big[2], out_max[2])


def test_running_mean_std_matches_numpy():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 3)).astype(np.float32) for n in (5, 17, 1, 40)]
    stats = envs.running_mean_std_init((3,))
    for b in batches:
        stats = envs.running_mean_std_update(stats, jnp.asarray(b))
    data = np.concatenate(batches)
    # The initial (mean 0, var 1, count 1e-4) prior shifts the result by O(1e-5).
    np.testing.assert_allclose(stats.mean, data.mean(0), atol=1e-4)
    np.testing.assert_allclose(stats.var, data.var(0), rtol=1e-4, atol=1e-4)
    x = jnp.asarray(data)
    z = envs.normalize(stats, x)
    np.testing.assert_allclose(np.mean(np.asarray(z), 0), 0.0, atol=1e-3)
    np.testing.assert_allclose(np.std(np.asarray(z), 0), 1.0, atol=1e-3)


def test_reward_scaling_matches_python_loop():
    rng = np.random.default_rng(1)
    rewards = rng.normal(size=(30, 4)).astype(np.float32)
    dones = rng.random((30, 4)) < 0.1
    gamma = 0.9
    state = envs.reward_scale_init(4)
    ret = np.zeros(4)
    seen = []
    for t in range(30):
        state, scaled = envs.reward_scale_update(
            state, jnp.asarray(rewards[t]), jnp.asarray(dones[t]), gamma
        )
        ret = ret * gamma + rewards[t]
        seen.extend(ret.tolist())
        var = np.var(seen)  # prior count 1e-4 is negligible after the first batch
        np.testing.assert_allclose(scaled, rewards[t] / np.sqrt(var + 1e-8), rtol=2e-3)
        ret = np.where(dones[t], 0.0, ret)


def _rollout(name, num_envs, num_steps, normalize_observations=False):
    env, params = envs.make_env(name)
    spec = envs.env_spec(env, params, name)
    net = make_actor_critic(spec, NetworkConfig(hidden_sizes=(16,)))
    key = jax.random.PRNGKey(0)
    obs, env_state = reset_envs(env, params, key, num_envs)
    net_params = net.init(key, obs[0])
    carry = EnvCarry(
        env_state, obs, envs.running_mean_std_init(spec.obs_shape), envs.reward_scale_init(num_envs)
    )
    fn = jax.jit(
        lambda p, c, k: rollout(
            net, p, env, params, c, k, num_steps=num_steps,
            normalize_observations=normalize_observations,
        )
    )
    carry, traj = fn(net_params, carry, jax.random.PRNGKey(1))
    return net, net_params, carry, traj


def test_rollout_shapes_and_truncation_on_pendulum():
    # Pendulum never terminates and is cut at 200 steps: the rollout must say "truncated".
    _, _, _, traj = _rollout("Pendulum-v1", num_envs=3, num_steps=250)
    assert traj.obs.shape == (250, 3, 3) and traj.action.shape == (250, 3, 1)
    for leaf in (traj.log_prob, traj.value, traj.reward, traj.next_value):
        assert leaf.shape == (250, 3) and leaf.dtype == jnp.float32
    assert not bool(jnp.any(traj.terminated))
    truncated_at = np.nonzero(np.asarray(traj.truncated[:, 0]))[0]
    np.testing.assert_array_equal(truncated_at, [199])
    # Elsewhere the true successor is the next observation: next_value[t] == value[t + 1].
    keep = np.ones(249, bool)
    keep[199] = False
    np.testing.assert_allclose(traj.next_value[:-1][keep], traj.value[1:][keep], rtol=1e-5)
    # At the cut, the successor is the final observation, not the reset one.
    assert not np.allclose(traj.next_value[199], traj.value[200])
    assert float(traj.episode_return[199, 0]) == pytest.approx(float(jnp.sum(traj.reward[:200, 0])))


def test_rollout_next_value_is_final_observation_value_on_termination():
    _, _, _, traj = _rollout("CartPole-v1", num_envs=8, num_steps=64)
    done = np.asarray(traj.terminated | traj.truncated)
    assert done.sum() > 0
    t_idx, b_idx = np.nonzero(done[:-1])
    # Reset observations differ from final ones, so the values differ at episode ends.
    assert not np.allclose(traj.next_value[t_idx, b_idx], traj.value[t_idx + 1, b_idx])
    not_done = ~done[:-1]
    np.testing.assert_allclose(
        np.asarray(traj.next_value[:-1])[not_done], np.asarray(traj.value[1:])[not_done], rtol=1e-5
    )


def test_rollout_observation_normalisation_updates_stats():
    _, _, carry, traj = _rollout("CartPole-v1", num_envs=8, num_steps=32, normalize_observations=True)
    assert float(carry.obs_stats.count) == pytest.approx(8 * 32, rel=1e-3)
    assert float(jnp.max(jnp.abs(traj.obs))) <= 10.0


def test_successor_values_equal_the_critic_on_every_true_successor():
    from acjax.agents.rollout import successor_values

    env, params = envs.make_env("CartPole-v1")
    spec = envs.env_spec(env, params, "CartPole-v1")
    net = make_actor_critic(spec, NetworkConfig(hidden_sizes=(16, 16)))
    t, b = 12, 5
    k = jax.random.split(jax.random.PRNGKey(3), 4)
    net_params = net.init(k[0], jnp.zeros(4))
    obs = jax.random.normal(k[1], (t, b, 4))
    finals = jax.random.normal(k[2], (t, b, 4))

    def case(done):
        # s'_t: the next observation, or a final observation where the episode ended.
        nxt = jnp.concatenate([obs[1:], finals[-1:]], axis=0)
        true_next = jnp.where(done[..., None], finals, nxt)
        return true_next, done

    rng = np.random.default_rng(0)
    few = np.zeros((t, b), bool)
    few[rng.integers(0, t - 1, 4), rng.integers(0, b, 4)] = True  # <= B ends: one critic pass
    few[0, 0] = few[t - 1, 2] = True  # the first flat slot, and the last step (not an "end")
    many = rng.random((t, b)) < 0.5  # > B ends: the critic on all of true_next
    assert few[:-1].sum() <= b < many[:-1].sum()
    fn = jax.jit(lambda tn, d: successor_values(net, net_params, net.value(net_params, obs), tn, d))
    cases = [case(jnp.asarray(d)) for d in (few, many, np.zeros((t, b), bool))]
    for true_next, done in cases:
        np.testing.assert_allclose(
            fn(true_next, done), net.value(net_params, true_next), rtol=1e-6, atol=1e-7
        )
    # Under vmap the branch is a select over both: still every successor's value.
    true_next = jnp.stack([c[0] for c in cases])
    done = jnp.stack([c[1] for c in cases])
    np.testing.assert_allclose(
        jax.vmap(fn)(true_next, done), net.value(net_params, true_next), rtol=1e-6, atol=1e-7
    )
    # One step: the critic on true_next directly.
    one = successor_values(net, net_params, net.value(net_params, obs[:1]), finals[:1], few[:1])
    np.testing.assert_allclose(one, net.value(net_params, finals[:1]), rtol=1e-6)
