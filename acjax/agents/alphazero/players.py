"""Players of two-player pgx games, and matches between them.

A player is a pure function `player(key, state[B]) -> action[B]` that only ever picks a legal
action of `state.legal_action_mask`:

* `random_player`: uniform over the legal actions;
* `minimax_player`: tic-tac-toe played perfectly, from a table of every position's
  game-theoretic value (exhaustive minimax over the 3^9 boards, computed once on the host);
  ties between equally good moves are broken at random;
* `lookahead_player(env)`: a one-ply lookahead for any game: takes a winning move when there is
  one, else a move after which the opponent has no immediate win, else any legal move (for
  Connect Four the usual heuristic opponent);
* `search_player(...)`: the network with AlphaZero's search (`acjax.agents.alphazero.search`),
  the most visited move.

`play_match(env, first, second, key, num_games)` plays `num_games` games, the side that starts
alternating (`first` starts the first half), and returns `first`'s wins, draws and losses.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["lookahead_player", "match_scores", "minimax_player", "minimax_values", "play_match",
           "random_player", "search_player", "tic_tac_toe_index"]

Player = Callable[[jax.Array, Any], jax.Array]

_LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))


def _choose(key: jax.Array, allowed: jax.Array) -> jax.Array:
    """A uniformly random allowed action per row of `allowed[B, A]` (bool)."""
    logits = jnp.where(allowed, 0.0, -jnp.inf)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def random_player(key: jax.Array, state) -> jax.Array:
    """Uniform over the legal actions."""
    return _choose(key, state.legal_action_mask)


@functools.cache
def minimax_values() -> np.ndarray:
    """`values[3^9]` (int8): the value of every tic-tac-toe board for the player to move
    (+1 win, 0 draw, -1 loss with perfect play). Board index: `tic_tac_toe_index`, cells 0
    empty, 1 the mover's, 2 the opponent's."""
    values = np.full(3**9, -2, np.int8)
    powers = 3 ** np.arange(9)

    def lines(cells, who):
        return any(all(cells[i] == who for i in line) for line in _LINES)

    def value(cells: tuple[int, ...]) -> int:
        index = int(np.dot(cells, powers))
        if values[index] != -2:
            return int(values[index])
        if lines(cells, 2):  # the opponent's last move made a line
            result = -1
        elif all(c != 0 for c in cells):
            result = 0
        else:
            result = -1
            for i in range(9):
                if cells[i] == 0:
                    child = list(cells)
                    child[i] = 1
                    # The opponent moves next: swap the roles of the marks.
                    swapped = tuple({0: 0, 1: 2, 2: 1}[c] for c in child)
                    result = max(result, -value(swapped))
        values[index] = result
        return result

    value((0,) * 9)
    # Boards not reachable from the empty one (never queried in play) stay at the sentinel -2.
    return values


def tic_tac_toe_index(own: jax.Array, opp: jax.Array) -> jax.Array:
    """The table index of boards `own[..., 9]`, `opp[..., 9]` (the mover's and the
    opponent's marks, bool)."""
    powers = 3 ** jnp.arange(9)
    cells = own.astype(jnp.int32) + 2 * opp.astype(jnp.int32)
    return jnp.sum(cells * jnp.broadcast_to(powers, cells.shape), axis=-1)


def minimax_player(key: jax.Array, state) -> jax.Array:
    """Perfect tic-tac-toe (pgx's `tic_tac_toe`): a move of the best value for the mover,
    ties broken at random."""
    table = jnp.asarray(minimax_values(), jnp.int32)
    obs = state.observation.reshape(state.observation.shape[0], 9, 2)
    own, opp = obs[..., 0], obs[..., 1]
    moves = jnp.eye(9, dtype=bool)  # [a, cell]
    own_after = own[:, None, :] | moves[None]  # [B, a, 9]
    # After the move the opponent is to move: its own marks are ours before.
    child = tic_tac_toe_index(opp[:, None, :] | jnp.zeros_like(own_after), own_after)
    move_value = -table[child]  # [B, a] for the mover
    legal = state.legal_action_mask
    best = jnp.max(jnp.where(legal, move_value, -9), axis=-1, keepdims=True)
    best = jnp.broadcast_to(best, move_value.shape)
    return _choose(key, legal & (move_value == best))


def lookahead_player(env) -> Player:
    """A one-ply lookahead for the pgx game `env`: win at once if possible, else avoid the
    moves after which the opponent wins at once, else any legal move (uniformly at random
    within the chosen kind)."""
    num_actions = env.num_actions
    actions = jnp.arange(num_actions)

    def one(state):
        mover = state.current_player
        after = jax.vmap(env.step, in_axes=(None, 0))(state, actions)  # [A]
        wins = state.legal_action_mask & (after.rewards[:, mover] > 0)
        replies = jax.vmap(lambda s: jax.vmap(env.step, in_axes=(None, 0))(s, actions))(after)
        opponent_wins = (replies.rewards[:, :, 1 - mover] > 0) & after.legal_action_mask
        safe = state.legal_action_mask & ~jnp.any(opponent_wins, axis=1)
        return wins, safe

    def player(key, state):
        wins, safe = jax.vmap(one)(state)
        legal = state.legal_action_mask
        any_win = jnp.any(wins, axis=-1, keepdims=True)
        any_safe = jnp.any(safe, axis=-1, keepdims=True)
        allowed = jnp.where(any_win, wins, jnp.where(any_safe, safe, legal))
        return _choose(key, allowed)

    return player


def search_player(env, apply, params, *, num_simulations: int, search: str = "puct",
                  c_puct: float = 1.25) -> Player:
    """The network `apply` with AlphaZero's search, without noise: the most visited legal
    move (gumbel: the move sequential halving chose)."""
    from acjax.agents.alphazero.search import best_action, pgx_recurrent_fn, pgx_root, run_search

    recurrent_fn = pgx_recurrent_fn(env, apply)

    def player(key, state):
        root = pgx_root(env, apply, params, state)
        out = run_search(params, key, root, recurrent_fn, ~state.legal_action_mask,
                         num_simulations=num_simulations, search=search, c_puct=c_puct,
                         dirichlet_fraction=0.0, gumbel_scale=0.0)
        return best_action(out, state.legal_action_mask, search=search)

    return player


def play_match(env, first: Player, second: Player, key: jax.Array, num_games: int, *,
               max_moves: int = 1000) -> tuple[jax.Array, jax.Array, jax.Array]:
    """`first`'s `(wins, draws, losses)` over `num_games` games against `second`.

    `first` starts the first `num_games // 2` games (pgx picks who moves first at random; the
    players' seats follow it), `second` the others. Every game runs to its end (at most
    `max_moves` moves).
    """
    score, _ = match_scores(env, first, second, key, num_games, max_moves=max_moves)
    return jnp.sum(score > 0), jnp.sum(score == 0), jnp.sum(score < 0)


def match_scores(env, first: Player, second: Player, key: jax.Array, num_games: int, *,
                 max_moves: int = 1000) -> tuple[jax.Array, jax.Array]:
    """`(score[G], moves[G])`: `first`'s result in each game (+1 win, 0 draw, -1 loss) and
    the game's length, sides alternated as in `play_match`."""
    init_key, play_key = jax.random.split(key)
    state = jax.vmap(env.init)(jax.random.split(init_key, num_games))
    starts = jnp.arange(num_games) < num_games // 2
    # The seat of `first`: the one to move now in the games it starts, the other seat else.
    seat = jnp.where(starts, state.current_player, 1 - state.current_player)

    def cond(carry):
        state, _, _, _, moves = carry
        return jnp.any(~(state.terminated | state.truncated)) & (moves < max_moves)

    def body(carry):
        state, total, length, key, moves = carry
        key, k1, k2 = jax.random.split(key, 3)
        a1, a2 = first(k1, state), second(k2, state)
        action = jnp.where(state.current_player == seat, a1, a2)
        live = ~(state.terminated | state.truncated)
        state = jax.vmap(env.step)(state, action)
        # pgx reports a reward at the move that ends the game only.
        return state, total + state.rewards, length + live, key, moves + 1

    total = jnp.zeros_like(state.rewards)
    length = jnp.zeros(num_games, jnp.int32)
    state, total, length, _, _ = jax.lax.while_loop(
        cond, body, (state, total, length, play_key, 0))
    score = jnp.take_along_axis(total, seat[:, None], axis=1)[:, 0]
    return score, length
