"""End-to-end learning with the shipped presets: fixed seeds, thresholds that mean learning.

Each test trains several seeds in one `jit(vmap(train))` and evaluates every seed's greedy
policy on 20 fresh episodes.
"""

import jax
import numpy as np
import pytest

from acjax.ppo_a2c import make_train, ppo_a2c_preset

pytestmark = pytest.mark.learning


def train_and_evaluate(env: str, algo: str, seeds: list[int], episodes: int = 20) -> np.ndarray:
    trainer = make_train(ppo_a2c_preset(env, algo))

    def run(key):
        train_key, eval_key = jax.random.split(key)
        state, _ = trainer.train(train_key)
        returns, _ = trainer.evaluate(state, eval_key, episodes)
        return returns

    keys = jax.vmap(jax.random.PRNGKey)(np.asarray(seeds))
    returns = np.asarray(jax.jit(jax.vmap(run))(keys))  # [seeds, episodes]
    print(f"{env} {algo}: greedy mean return per seed {returns.mean(axis=1).round(1).tolist()}")
    return returns.mean(axis=1)


def test_ppo_solves_cartpole():
    per_seed = train_and_evaluate("CartPole-v1", "ppo", seeds=[0, 1, 2])
    assert np.all(per_seed >= 475.0), per_seed


def test_a2c_learns_cartpole():
    per_seed = train_and_evaluate("CartPole-v1", "a2c", seeds=[0, 1])
    assert np.all(per_seed >= 400.0), per_seed


def test_ppo_learns_pendulum():
    per_seed = train_and_evaluate("Pendulum-v1", "ppo", seeds=[0, 1])
    assert np.all(per_seed >= -250.0), per_seed
