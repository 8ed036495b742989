"""Per-environment presets of `python -m acjax.alphazero`.

`alphazero_preset(env)` returns the configuration the command line starts from; every field
can still be overridden by a flag. Presets are plain data (nothing is imported or started in
JAX; the id is checked when the configuration is validated).
"""

from __future__ import annotations

import dataclasses

from acjax.agents.alphazero.config import GAME_LENGTHS, AlphaZeroConfig

__all__ = ["PRESETS", "alphazero_preset"]

PRESETS: dict[str, dict] = {
    # Gumbel MuZero's search (its policy target the prior improved by the completed Q-values)
    # won more of its games against a random player than PUCT did (93.8-94.6% of 2,000 games
    # per seed against 92.9%), none lost to minimax, evaluated with 128 simulations per move.
    # The noise and temperature fields are PUCT's (--search puct): every move of the (at most
    # 9-move) game with temperature 1 and strong root noise (alpha ~ 10 / legal moves, half
    # the prior), since self-play between near-perfect players otherwise only ever reaches
    # drawn positions and the value of the others stays unlearnt (with alpha 0.3 / 0.25 the
    # PUCT player lost 7-16 of 100 games to minimax; evaluated with 64 simulations it lost
    # none in 1,000 games where 16 or 32 lost 21).
    "tic_tac_toe": dict(total_timesteps=128 * 9 * 150, num_envs=128, search="gumbel",
                        num_simulations=32, eval_simulations=128, temperature_moves=9,
                        dirichlet_alpha=1.0, dirichlet_fraction=0.5,
                        gradient_steps=32, batch_size=256, replay_capacity=20_000,
                        learning_rate=1e-3),
    # Three 512-wide layers: two of 256 stayed at 60-66% wins against the one-ply lookahead
    # however long they trained. Evaluating with 128 simulations per move rather than 64 added
    # 3-9 points against it. Gumbel MuZero's search is what made it strong: with PUCT the same
    # network won 61 of 100 games against the lookahead (seed 0), with Gumbel 80-85 (seeds 0-2).
    "connect_four": dict(total_timesteps=128 * 42 * 300, num_envs=128, search="gumbel",
                         num_simulations=32, eval_simulations=128, dirichlet_alpha=1.0,
                         temperature_moves=10, gradient_steps=16, batch_size=512,
                         replay_capacity=100_000, learning_rate=1e-3,
                         hidden_sizes=(512, 512, 512)),
    "CartPole-v1": dict(total_timesteps=300_000, num_envs=16, num_steps=32,
                        num_simulations=16, temperature_moves=0, gamma=0.99, n_step=20,
                        gradient_steps=8, batch_size=256, replay_capacity=20_000,
                        learning_rate=1e-3, weight_decay=0.0),
}
"""Tuned fields per environment."""


def alphazero_preset(env: str, algo: str | None = None,
                     name: str | None = None) -> AlphaZeroConfig:
    """The configuration `python -m acjax.alphazero --env ENV` starts from.

    Raises:
      ValueError: a named preset (there are none) or an `algo` other than "alphazero".
    """
    if name is not None:
        raise ValueError(f"preset={name!r}: python -m acjax.alphazero has no named presets; "
                         "drop --preset")
    if algo not in (None, "alphazero"):
        raise ValueError(f"algo={algo!r}: python -m acjax.alphazero trains 'alphazero'; drop "
                         "--algo")
    fields = dict(PRESETS.get(env, {}))
    # A game's update plays its games to their end; a gymnax rollout is 32 steps by default.
    fields.setdefault("num_steps", GAME_LENGTHS.get(env, 32))
    return dataclasses.replace(AlphaZeroConfig(), env=env, **fields)
