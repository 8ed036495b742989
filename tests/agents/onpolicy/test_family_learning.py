"""The simplest members of the family learn what their texts say they learn: five seeds in one
`jit(vmap(train))` each, greedy evaluation over 20 episodes per seed."""

import dataclasses

import jax
import numpy as np
import pytest

from acjax.envs import make_env, optimal_gain
from acjax.ppo_a2c import make_train, ppo_a2c_preset

pytestmark = pytest.mark.learning

SEEDS = np.arange(5)


def greedy_returns(config, episodes: int = 20):
    """`[seeds]` greedy mean returns and the trained states of `config` over `SEEDS`."""
    trainer = make_train(config, num_reports=1)

    def run(key):
        train_key, eval_key = jax.random.split(key)
        state, _ = trainer.train(train_key)
        returns, _ = trainer.evaluate(state, eval_key, episodes)
        return returns.mean(), state

    per_seed, states = jax.jit(jax.vmap(run))(jax.vmap(jax.random.PRNGKey)(SEEDS))
    per_seed = np.asarray(per_seed)
    print(f"{config.env} {config.algo}: greedy mean return per seed {per_seed.round(1).tolist()}")
    return per_seed, states


def test_reinforce_with_a_value_baseline_solves_cartpole_within_1m_steps():
    config = ppo_a2c_preset("CartPole-v1", "reinforce")
    assert config.baseline == "value" and config.total_timesteps <= 1_000_000
    per_seed, _ = greedy_returns(config)
    assert np.median(per_seed) >= 475.0, per_seed


@pytest.mark.parametrize("critic", ["v", "q"])
def test_one_step_actor_critic_learns_cartpole(critic):
    config = dataclasses.replace(ppo_a2c_preset("CartPole-v1", "ac"), critic=critic,
                                 total_timesteps=400_000)
    per_seed, _ = greedy_returns(config)
    assert np.median(per_seed) >= 400.0, per_seed


def test_da2c_with_10_step_returns_solves_cartpole():
    config = ppo_a2c_preset("CartPole-v1", None, "da2c-nstep")
    assert config.total_timesteps <= 1_000_000
    per_seed, _ = greedy_returns(config)
    assert np.median(per_seed) >= 475.0, per_seed


def test_the_one_step_actor_critic_finds_the_regulators_optimal_slope():
    config = ppo_a2c_preset("Regulator1D-v0", "ac")
    assert config.network.architecture == "linear_quadratic"
    _, states = greedy_returns(config)
    theta1 = np.asarray(states.params["actor"]["theta1"])
    phi2 = np.asarray(states.params["critic"]["phi2"])
    cost = float(make_env(config.env)[1].action_cost)
    optimum, _ = optimal_gain(action_cost=cost, gamma=config.gamma)
    print(f"theta1 {theta1.round(4).tolist()} (optimum {optimum:.4f}), phi2 {phi2.round(3)}")
    assert np.all(np.abs(theta1 - optimum) <= 0.05), (theta1, optimum)
    assert np.all(phi2 < 0), phi2
