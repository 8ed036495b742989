"""AlphaZero: search as the actor's teacher, with mctx, on pgx board games and on gymnax.

    python -m acjax.alphazero --env tic_tac_toe [--search puct] [--help]
    python -m acjax.alphazero --env connect_four
    python -m acjax.alphazero --env CartPole-v1

The public face of `acjax.agents.alphazero`: the configuration, `make_train`, the search's
model builders for your own networks (`pgx_root`, `pgx_recurrent_fn`, `gymnax_root`,
`gymnax_recurrent_fn`, `run_search`, `search_policy`, `best_action`), the board symmetries,
the players and matches, and the pure target and loss
(`visit_count_policy`, `alphazero_loss`). Needs `pip install 'acjax[search]'` (mctx, pgx).
"""

from __future__ import annotations

from acjax.agents.alphazero.config import AlphaZeroConfig, Hyperparams, TrainState
from acjax.agents.alphazero.loop import Position, make_train
from acjax.agents.alphazero.players import (
    lookahead_player,
    match_scores,
    minimax_player,
    play_match,
    random_player,
    search_player,
)
from acjax.agents.alphazero.presets import alphazero_preset
from acjax.agents.alphazero.search import (
    best_action,
    gymnax_recurrent_fn,
    gymnax_root,
    pgx_recurrent_fn,
    pgx_root,
    run_search,
    search_policy,
)
from acjax.agents.alphazero.symmetry import augment, board_symmetries
from acjax.core.search_losses import alphazero_loss, visit_count_policy
from acjax.networks.policy_value import make_policy_value

__all__ = ["AlphaZeroConfig", "Hyperparams", "Position", "TrainState", "alphazero_loss",
           "alphazero_preset", "augment", "best_action", "board_symmetries", "gymnax_recurrent_fn", "gymnax_root", "lookahead_player",
           "main", "make_policy_value", "make_train", "match_scores", "minimax_player",
           "pgx_recurrent_fn", "pgx_root", "play_match", "random_player", "run_search",
           "search_player", "search_policy", "visit_count_policy"]


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point: `python -m acjax.alphazero --env tic_tac_toe`."""
    from acjax.run.cli import run_main

    return run_main("acjax.alphazero", argv)


if __name__ == "__main__":
    from acjax.run.cli import entry

    entry(main)
