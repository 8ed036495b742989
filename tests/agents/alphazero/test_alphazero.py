"""`python -m acjax.alphazero`: self-play targets, resume bit for bit, the report, bad input."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

pytest.importorskip("pgx")
pytest.importorskip("mctx")

from acjax.agents.alphazero.config import AlphaZeroConfig
from acjax.agents.alphazero.loop import make_train
from acjax.agents.alphazero.presets import alphazero_preset
from acjax.run.cli import run_main

TINY = ["--num-envs", "8", "--num-simulations", "4", "--eval-simulations", "8",
        "--gradient-steps", "2", "--batch-size", "32", "--hidden-sizes", "16", "16",
        "--eval-episodes", "4", "--no-progress", "--no-compilation-cache"]


@pytest.mark.parametrize("search", ["puct", "gumbel"])
def test_self_play_positions_hold_legal_targets_and_outcomes(search):
    config = dataclasses.replace(alphazero_preset("tic_tac_toe"), num_envs=16,
                                 num_simulations=8, total_timesteps=16 * 9 * 2,
                                 hidden_sizes=(16,), search=search)
    trainer = make_train(config)
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0))
    state, metrics = jax.jit(trainer.update)(state)
    replay = jax.device_get(state.replay)
    n = int(replay.size)
    assert n == 16 * 9
    data = jax.tree.map(lambda x: x[:n], replay.data)
    kept = data.weight > 0
    assert kept.sum() >= 16 * 5  # every game has at least 5 moves
    np.testing.assert_allclose(data.policy[kept].sum(-1), 1.0, rtol=1e-5)
    assert (data.policy[kept][~data.legal[kept]] == 0).all()
    assert set(np.unique(data.value[kept])) <= {-1.0, 0.0, 1.0}
    assert np.isfinite(data.root_value[kept]).all()
    assert (np.abs(data.root_value[kept]) <= 1.0 + 1e-6).all()
    # The mover's outcome and the opponent's are opposite: consecutive moves of a decided
    # game alternate signs, a drawn game's are all 0.
    value, live = data.value.reshape(9, 16), kept.reshape(9, 16)  # time-major, as played
    decided = 0
    for game in range(16):
        v = value[live[:, game], game]
        assert (v[1:] == -v[:-1]).all() if v[0] != 0 else (v == 0).all(), v
        decided += v[0] != 0
    assert decided > 0
    assert float(metrics["episode_count"]) == 16


def test_value_target_mix_is_a_traced_weight_of_the_root_value():
    config = dataclasses.replace(alphazero_preset("tic_tac_toe"), num_envs=8,
                                 num_simulations=4, total_timesteps=8 * 9, hidden_sizes=(16,))
    trainer = make_train(config)
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0))
    update = jax.jit(trainer.update)
    results = [update(state, config.hyperparams()._replace(value_target_mix=np.float32(m)))[0]
               for m in (0.0, 0.0, 1.0)]
    # The same self-play either way; only the value target, so the parameters, differ.
    same_replay = jax.tree.map(np.array_equal, results[0].replay, results[2].replay)
    assert all(jax.tree.leaves(same_replay))
    leaves = [jax.tree.leaves(r.params) for r in results]
    assert all(np.array_equal(a, b) for a, b in zip(leaves[0], leaves[1]))
    assert not all(np.array_equal(a, b) for a, b in zip(leaves[0], leaves[2]))


def test_resume_is_bit_identical(tmp_path):
    args = ["--env", "tic_tac_toe", "--total-timesteps", str(8 * 9 * 6), "--num-reports", "3",
            *TINY]
    straight = run_main("acjax.alphazero", [*args, "--run-dir", str(tmp_path / "a")])
    stopped = run_main("acjax.alphazero", [*args, "--run-dir", str(tmp_path / "b"),
                                           "--stop-after-steps", str(8 * 9 * 2)])
    assert stopped["stopped"]
    resumed = run_main("acjax.alphazero", ["--run-dir", str(tmp_path / "b"), "--resume",
                                           "--no-progress", "--no-compilation-cache"])
    assert resumed["params_fingerprint"] == straight["params_fingerprint"]
    report = straight["report"]
    for opponent in ("random", "minimax"):
        total = sum(report[f"{opponent}_{r}"][0] for r in ("wins", "draws", "losses"))
        assert total == 100


def test_cartpole_runs_with_search_and_reports_both_returns(tmp_path):
    summary = run_main("acjax.alphazero", [
        "--env", "CartPole-v1", "--total-timesteps", "512", "--num-envs", "4",
        "--num-steps", "16", "--num-simulations", "4", "--gradient-steps", "2",
        "--batch-size", "32", "--hidden-sizes", "16", "--eval-episodes", "2", "--no-progress",
        "--no-compilation-cache", "--run-dir", str(tmp_path / "r")])
    assert summary["env_steps"] == 512
    assert summary["eval_length_mean"] >= 1
    assert "network_greedy_return" in summary["report"]


@pytest.mark.parametrize(("args", "message"), [
    (["--env", "tic_tac_to"], ("env='tic_tac_to' is not a pgx game AlphaZero plays; did you "
                               "mean 'tic_tac_toe'")),
    (["--num-simulations", "0"], "num_simulations=0 must be a positive integer"),
    (["--search", "beam"], "search"),
    (["--env", "Pendulum-v1"], "continuous actions"),
    (["--algo", "ppo"], "algo='ppo'"),
    (["--value-target-mix", "1.5"], "value_target_mix=1.5 must lie in [0, 1]"),
])
def test_bad_input_exits_with_2_naming_the_flag(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        run_main("acjax.alphazero", [*args, "--run-dir", str(tmp_path / "r")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_defaults_are_a_valid_configuration():
    assert AlphaZeroConfig().validate().num_actions == 9
