"""End-to-end learning of SAC, TD3 and DDPG with the shipped Pendulum-v1 presets.

Each test trains three seeds in one `jit(vmap(train))` for 20,000 env steps per seed and
evaluates every seed's greedy policy on 20 fresh episodes. A random policy scores about -1200
on Pendulum-v1 and a policy that swings up and balances about -150.
"""

import jax
import numpy as np
import pytest

from acjax import sac, td3
from acjax.sac import sac_preset
from acjax.td3 import td3_preset

pytestmark = pytest.mark.learning

SEEDS = [0, 1, 2]


def train_and_evaluate(config, make_train, episodes: int = 20) -> np.ndarray:
    trainer = make_train(config)

    def run(key):
        train_key, eval_key = jax.random.split(key)
        state, metrics = trainer.train(train_key)
        returns, _ = trainer.evaluate(state, eval_key, episodes)
        return returns, metrics["episode_return_sum"], metrics["episode_count"]

    keys = jax.vmap(jax.random.PRNGKey)(np.asarray(SEEDS))
    returns, return_sums, counts = jax.jit(jax.vmap(run))(keys)
    per_seed = np.asarray(returns).mean(axis=1)
    # The training return of the episodes that ended in the first and the last 2,000 steps.
    chunk = 2_000 // config.steps_per_iteration
    first = np.asarray(return_sums[:, :chunk].sum(1) / counts[:, :chunk].sum(1))
    last = np.asarray(return_sums[:, -chunk:].sum(1) / counts[:, -chunk:].sum(1))
    def fmt(x):
        return [round(float(v), 1) for v in x]

    print(f"{config.env} {config.algo}: greedy mean return per seed {fmt(per_seed)}, training "
          f"return in the first 2k steps {fmt(first)}, in the last 2k {fmt(last)}")
    assert config.total_timesteps == 20_000
    assert np.all(last > first + 500.0), (first, last)  # it learned during the run
    return per_seed


@pytest.mark.parametrize(
    "config, make_train",
    [
        (sac_preset("Pendulum-v1"), sac.make_train),
        (td3_preset("Pendulum-v1", "td3"), td3.make_train),
        (td3_preset("Pendulum-v1", "ddpg"), td3.make_train),
    ],
    ids=["sac", "td3", "ddpg"],
)
def test_pendulum_within_20k_steps(config, make_train):
    per_seed = train_and_evaluate(config, make_train)
    assert np.median(per_seed) >= -200.0, per_seed
    assert np.min(per_seed) >= -300.0, per_seed
