"""AlphaZero learns: search with gymnax CartPole-v1 as its own model, two seeds in one vmap.

Tic-tac-toe's self-play is trained and checked against minimax and random players in
notebooks/alphazero.ipynb (run by tests/test_notebooks.py); the full presets' figures (three
seeds each, Connect Four) are in README ("Search: AlphaZero").
"""

from __future__ import annotations

import pytest

pytest.importorskip("pgx")
pytest.importorskip("mctx")

from acjax.run.cli import run_main

pytestmark = pytest.mark.learning


def test_searched_cartpole_reaches_475_on_every_seed(tmp_path):
    summary = run_main("acjax.alphazero", [
        "--env", "CartPole-v1", "--num-seeds", "2", "--eval-episodes", "20", "--num-reports",
        "4", "--no-progress", "--run-dir", str(tmp_path / "run")])
    assert summary["env_steps"] >= 299_000
    assert min(summary["eval_return_per_seed"]) >= 475, summary["eval_return_per_seed"]
    # The network alone, greedy without search, learnt the policy too.
    assert min(summary["report"]["network_greedy_return"]) >= 300, summary["report"]
