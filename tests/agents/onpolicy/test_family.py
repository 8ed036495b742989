"""REINFORCE, the one-step actor-critic (V and Q critics), DA2C's presets and the reward
shaping they use: estimators against plain Python loops and hand computations, the one-step
update against A2C, masks, agent state, and the checks that come before compiling."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acjax.agents.onpolicy import ac, reinforce
from acjax.agents.onpolicy.loop import UpdateInputs, episode_mask
from acjax.agents.rollout import Transition
from acjax.core.distributions import Categorical
from acjax.envs import make_env
from acjax.envs.shaping import TerminationReward
from acjax.ppo_a2c import PPOA2CConfig, make_train, ppo_a2c_preset


def ragged_rollout(seed: int, t: int = 12, b: int = 5):
    """A `[T, B]` rollout whose environments end their first episode at different steps, some
    by termination and some by truncation, then go on into a second episode."""
    rng = np.random.default_rng(seed)
    reward = rng.normal(size=(t, b)).astype(np.float32)
    value = rng.normal(size=(t, b)).astype(np.float32)
    next_value = rng.normal(size=(t, b)).astype(np.float32)
    terminated = np.zeros((t, b), bool)
    truncated = np.zeros((t, b), bool)
    for env in range(b):
        end = rng.integers(0, t)
        (terminated if env % 2 else truncated)[end, env] = True
        if end + 3 < t:  # the second episode ends too
            terminated[end + 3, env] = True
    return reward, value, next_value, terminated, truncated


def python_returns(reward, next_value, terminated, truncated, gamma, bootstrap):
    """Each environment's first episode, by a plain loop: G_t = r_t + gamma G_{t+1}, cut at a
    termination, bootstrapped (or cut) at a truncation or the end of the rollout."""
    t, b = reward.shape
    out = np.full((t, b), np.nan)
    for env in range(b):
        end = next((i for i in range(t) if terminated[i, env] or truncated[i, env]), t - 1)
        g = 0.0
        if not terminated[end, env] and bootstrap:
            g = next_value[end, env]
        for i in range(end, -1, -1):
            g = reward[i, env] + gamma * g
            out[i, env] = g
    return out


def _traj(reward, value, next_value, terminated, truncated):
    z = jnp.zeros_like(reward)
    return Transition(jnp.zeros(reward.shape + (1,)), z.astype(jnp.int32), z, value, reward,
                      terminated, truncated, next_value, z, z.astype(jnp.int32))


@pytest.mark.parametrize("baseline", ["none", "value", "mean"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_monte_carlo_returns_with_masks_equal_a_python_loop_over_ragged_episodes(seed, baseline):
    reward, value, next_value, terminated, truncated = ragged_rollout(seed)
    gamma = 0.9
    config = dataclasses.replace(ppo_a2c_preset("CartPole-v1", "reinforce"), baseline=baseline)
    weight = episode_mask(terminated, truncated)
    state = reinforce.AGENT.init_state(config)
    inputs = UpdateInputs(None, None, jax.random.PRNGKey(0), state, weight)
    hparams = config.hyperparams()._replace(gamma=jnp.float32(gamma))
    adv, g, new_state = reinforce.monte_carlo_advantages(
        config, hparams, _traj(reward, value, next_value, terminated, truncated), inputs)
    expected = python_returns(reward, next_value, terminated, truncated, gamma,
                              bootstrap=baseline == "value")
    mask = np.asarray(weight) > 0
    np.testing.assert_array_equal(mask, ~np.isnan(expected))  # the mask keeps the first episode
    np.testing.assert_allclose(np.asarray(g)[mask], expected[mask], rtol=1e-5, atol=1e-5)
    if baseline == "value":
        np.testing.assert_allclose(np.asarray(adv)[mask], (expected - value)[mask], rtol=1e-5,
                                   atol=1e-5)
    elif baseline == "none":
        np.testing.assert_allclose(np.asarray(adv)[mask], expected[mask], rtol=1e-5, atol=1e-5)
    else:
        # The first batch has no baseline yet; its returns' mean then enters the running mean.
        np.testing.assert_allclose(np.asarray(adv)[mask], expected[mask], rtol=1e-5, atol=1e-5)
        mean, correction = (float(x) for x in new_state)
        d = config.baseline_decay
        assert correction == pytest.approx(1 - d)
        assert mean / correction == pytest.approx(expected[mask].mean(), rel=1e-5)
        adv2, _, state2 = reinforce.monte_carlo_advantages(
            config, hparams, _traj(reward, value, next_value, terminated, truncated),
            inputs._replace(agent_state=new_state))
        np.testing.assert_allclose(np.asarray(adv2)[mask],
                                   expected[mask] - expected[mask].mean(), rtol=1e-4, atol=1e-4)
        assert float(state2[1]) == pytest.approx(1 - d * d)


def test_episode_mask_keeps_each_first_episode_up_to_its_end():
    done = np.array([[0, 0, 1], [1, 0, 0], [0, 0, 1], [1, 0, 0]], bool)
    mask = np.asarray(episode_mask(done, np.zeros_like(done)))
    np.testing.assert_array_equal(mask, [[1, 1, 1], [1, 1, 0], [0, 1, 0], [0, 1, 0]])


class _HandQ:
    """A network whose Q, policy and values are written out by hand: Q(s, a) = s + 10 a, and a
    policy that picks action 1 with probability 1 (up to exp(-50))."""

    @staticmethod
    def policy(params, obs):
        logits = jnp.stack([jnp.zeros(obs.shape[:-1]), jnp.full(obs.shape[:-1], 50.0)], -1)
        return Categorical(logits)

    @staticmethod
    def q_value(params, obs, action):
        return obs[..., 0] + 10.0 * action

    @staticmethod
    def action_values(params, obs):
        return jnp.stack([obs[..., 0], obs[..., 0] + 10.0], -1)


def test_q_critic_target_and_advantage_equal_a_hand_computation():
    obs = jnp.array([[[1.0], [2.0], [3.0]]])  # [T=1, B=3, 1]
    next_obs = jnp.array([[[4.0], [5.0], [6.0]]])
    reward = jnp.array([[1.0, -1.0, 0.5]])
    terminated = jnp.array([[False, True, False]])
    truncated = jnp.array([[False, False, True]])
    action = jnp.array([[0, 1, 0]])
    z = jnp.zeros((1, 3))
    traj = Transition(obs, action, z, z, reward, terminated, truncated, z, z,
                      z.astype(jnp.int32), next_obs)
    config = dataclasses.replace(ppo_a2c_preset("CartPole-v1", "ac"), critic="q", num_envs=3)
    hparams = config.hyperparams()._replace(gamma=jnp.float32(0.5))
    adv, target, _ = ac.q_advantages(config, hparams, traj,
                                     UpdateInputs(_HandQ, None, jax.random.PRNGKey(3), (), None))
    # a' = 1 (certain): Q(s', 1) = s' + 10; the terminated step does not bootstrap, the
    # truncated one does (its s' is the true final observation).
    np.testing.assert_allclose(target, [[1.0 + 0.5 * 14.0, -1.0, 0.5 + 0.5 * 16.0]])
    # A = Q(s, a) - sum_b pi(b|s) Q(s, b) = Q(s, a) - Q(s, 1).
    np.testing.assert_allclose(adv, [[-10.0, 0.0, -10.0]], atol=1e-4)


def _one_step(algo: str, **kw):
    base = dict(env="CartPole-v1", algo=algo, total_timesteps=4 * 40, num_envs=4, num_steps=1,
                update_epochs=1, num_minibatches=1, advantage="nstep", n_step=1,
                learning_rate=1e-3, ent_coef=0.01, normalize_advantages=False, optimizer="adam")
    return dataclasses.replace(PPOA2CConfig(), **{**base, **kw})


def test_the_one_step_update_equals_a2c_with_one_step_and_n_step_1():
    states = []
    for algo in ("ac", "a2c"):
        trainer = make_train(_one_step(algo))
        state, _metrics = jax.jit(trainer.train)(jax.random.PRNGKey(5))
        states.append(state)
    for x, y in zip(jax.tree.leaves(states[0].params), jax.tree.leaves(states[1].params),
                    strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    assert not np.allclose(jax.tree.leaves(states[0].params)[0],
                           jax.tree.leaves(make_train(_one_step("ac")).init(
                               jax.random.PRNGKey(5)).params)[0])


@pytest.mark.parametrize("env", ["CartPole-v1", "Pendulum-v1"])
def test_the_q_critic_trains_on_discrete_and_continuous_actions(env):
    config = dataclasses.replace(_one_step("ac", critic="q", env=env), total_timesteps=4 * 20)
    trainer = make_train(config)
    state, metrics = jax.jit(trainer.train)(jax.random.PRNGKey(0))
    assert "critic_trunk" in state.params and "q_head" in state.params
    assert all(np.isfinite(np.asarray(v)).all() for v in metrics.values())
    assert float(metrics["grad_norm"][-1]) > 0


@pytest.mark.parametrize("baseline", ["none", "mean", "value"])
def test_reinforce_counts_one_episode_per_environment_and_update(baseline):
    config = dataclasses.replace(ppo_a2c_preset("CartPole-v1", "reinforce"), baseline=baseline,
                                 num_envs=4, total_timesteps=3 * 4 * 500)
    trainer = make_train(config)
    state, metrics = jax.jit(trainer.train)(jax.random.PRNGKey(1))
    np.testing.assert_array_equal(metrics["episode_count"], [4.0, 4.0, 4.0])
    assert jax.tree.leaves(state.agent_state) == [] or baseline == "mean"
    if baseline == "mean":
        assert float(state.agent_state[1]) == pytest.approx(1 - config.baseline_decay ** 3)


def test_termination_reward_replaces_only_terminating_rewards():
    env, params = make_env("CartPole-v1")
    shaped = TerminationReward(env, -10.0)
    _, state = shaped.reset(jax.random.PRNGKey(0), params)
    rewards, terminated, returns = [], [], []
    for i in range(60):  # always push right: the pole falls within a few dozen steps
        _obs, state, r, term, _trunc, info = shaped.step(jax.random.PRNGKey(i), state, 1, params)
        rewards.append(float(r))
        terminated.append(bool(term))
        returns.append(float(info["episode_return"]))
    end = terminated.index(True)
    assert rewards[end] == -10.0 and set(rewards[:end]) == {1.0}
    assert returns[end] == end + 1.0  # the episode statistics keep the env's own rewards


def test_termination_reward_leaves_truncated_steps_alone():
    env, params = make_env("Pendulum-v1")  # never terminates, truncates at 200 steps
    shaped = TerminationReward(env, -10.0)
    _, state = shaped.reset(jax.random.PRNGKey(0), params)
    step = jax.jit(lambda s, k: shaped.step(k, s, jnp.zeros(1), params))
    for i in range(200):
        _, state, r, term, trunc, _ = step(state, jax.random.PRNGKey(i))
    assert bool(trunc) and not bool(term) and float(r) != -10.0


@pytest.mark.parametrize("name, pattern", [
    ("da2c-nstep", None), ("da2c-mc", None),
])
def test_da2c_presets_are_the_texts_settings(name, pattern):
    config = ppo_a2c_preset("CartPole-v1", None, name)
    assert config.algo == "a2c" and config.gamma == 0.95 and config.vf_coef == 0.1
    assert config.termination_reward == -10.0
    net = config.network
    assert net.shared and net.detach_critic and net.value_bound and len(net.hidden_sizes) == 2
    if name == "da2c-nstep":
        assert config.advantage == "nstep" and config.n_step == 10 and config.num_steps == 10
    else:
        assert config.whole_episodes and config.advantage == "mc"
    config.validate()


@pytest.mark.parametrize("algo, kw, pattern", [
    ("reinforce", dict(whole_episodes=False), r"whole_episodes=False; pass --whole-episodes"),
    ("reinforce", dict(advantage="gae"), r"advantage='gae'.*--advantage mc"),
    ("reinforce", dict(update_epochs=2), r"update_epochs=2 .*--update-epochs 1"),
    ("reinforce", dict(num_steps=100),
     r"num_steps=100 is shorter than CartPole-v1's episode limit \(500 steps\).*--num-steps 500"),
    ("ac", dict(num_steps=5), r"num_steps=5.*--num-steps 1"),
    ("ac", dict(n_step=3), r"n_step=3.*--n-step 1"),
    ("ppo", dict(baseline="mean"), r"baseline='mean' is REINFORCE's option"),
    ("a2c", dict(critic="q"), r"critic='q' is the one-step actor-critic's option"),
    ("reinforce", dict(baseline="median"), r"baseline='median' is not one of 'none', 'mean'"),
    ("ac", dict(termination_reward=float("nan")), r"termination_reward=nan must be a finite"),
    ("reinforce", dict(baseline_decay=1.0), r"baseline_decay=1\.0 must lie in \[0, 1\)"),
])
def test_bad_settings_of_the_new_agents_raise_before_compiling(algo, kw, pattern, monkeypatch):
    config = dataclasses.replace(ppo_a2c_preset("CartPole-v1", algo), **kw)

    def no_compile(*a, **k):
        raise AssertionError("compiled before validating")

    from acjax.envs import import_gymnax

    import_gymnax()
    monkeypatch.setattr(jax, "jit", no_compile)
    with pytest.raises(ValueError, match=pattern):
        make_train(config)


def test_named_preset_errors_name_the_preset_and_the_fix():
    with pytest.raises(ValueError, match=r"preset='da2c' is not one of 'da2c-mc', 'da2c-nstep'"):
        ppo_a2c_preset("CartPole-v1", None, "da2c")
    with pytest.raises(ValueError, match=r"algo='a2c' preset, but algo='ppo'; pass --algo a2c"):
        ppo_a2c_preset("CartPole-v1", "ppo", "da2c-nstep")


def test_an_agents_own_state_is_checkpointed_and_resumed_bit_identically(tmp_path):
    from acjax.run.checkpoint import Checkpointer
    from acjax.run.cli import run_main

    args = ["--env", "CartPole-v1", "--algo", "reinforce", "--baseline", "mean", "--num-envs",
            "2", "--total-timesteps", "6000", "--num-reports", "6", "--eval-episodes", "2",
            "--no-progress", "--no-compilation-cache"]
    straight = run_main("acjax.ppo_a2c", [*args, "--run-dir", str(tmp_path / "a")])
    stopped = run_main("acjax.ppo_a2c", [*args, "--run-dir", str(tmp_path / "b"),
                                         "--stop-after-steps", "3000"])
    assert stopped["stopped"]
    resumed = run_main("acjax.ppo_a2c", ["--run-dir", str(tmp_path / "b"), "--resume",
                                         "--no-progress", "--no-compilation-cache"])
    assert resumed["params_fingerprint"] == straight["params_fingerprint"]
    saved = Checkpointer(tmp_path / "b", read_only=True)
    leaves = saved.read_meta(saved.latest_step())["leaves"]
    assert [e["path"] for e in leaves if e["path"].startswith(".agent_state")] == [
        ".agent_state[0]", ".agent_state[1]"]


def test_the_preset_flag_starts_from_the_named_preset_and_flags_still_override_it():
    from acjax.run.flags import parse_args

    config, options = parse_args(PPOA2CConfig, ppo_a2c_preset,
                                 ["--preset", "da2c-mc", "--gamma", "0.9"], "test")
    assert options.preset == "da2c-mc"
    assert config.algo == "a2c" and config.whole_episodes and config.gamma == 0.9
    assert config.termination_reward == -10.0 and config.network.value_bound == 20.0
