"""The actor-learner learns: IMPALA and A3C on gymnax CartPole-v1, IMPALA on gymnasium's
CartPole-v1 stepped on the host (greedy evaluation, 20 episodes, fixed seeds).

The asynchronous runs are not bit-reproducible (thread timing decides which parameters each
trajectory is acted with), so the thresholds leave room: the issue's three-seed figures are in
README ("Asynchronous actors"); these check one seed each. IMPALA and the host run use a
shorter budget than README's 2M steps; A3C keeps the 2M, since at 1M it fell short of 400 in
some runs (233 and 354 greedy, where others reached 500).
"""

from __future__ import annotations

import dataclasses

import pytest

from acjax.agents.impala.presets import impala_preset
from acjax.run.actor_learner import train_and_report
from acjax.run.options import RunOptions

pytestmark = pytest.mark.learning

OPTIONS = RunOptions(progress=False, num_reports=4, eval_episodes=20, checkpoints=False)


def _train(tmp_path, env, **fields):
    config = dataclasses.replace(impala_preset(env), **fields)
    return train_and_report(config, OPTIONS, run_dir=tmp_path / "run")


def test_impala_solves_gymnax_cartpole(tmp_path):
    summary = _train(tmp_path, "CartPole-v1", total_timesteps=1_000_000)
    assert summary["eval_return_mean"] >= 475, summary


def test_a3c_learns_gymnax_cartpole(tmp_path):
    summary = _train(tmp_path, "CartPole-v1", mode="a3c", total_timesteps=2_000_000)
    assert summary["eval_return_mean"] >= 400, summary


def test_impala_learns_gymnasium_cartpole_on_the_host(tmp_path):
    pytest.importorskip("gymnasium")
    summary = _train(tmp_path, "gymnasium:CartPole-v1", total_timesteps=300_000)
    assert summary["eval_return_mean"] >= 150, summary
