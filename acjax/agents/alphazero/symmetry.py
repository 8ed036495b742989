"""The symmetries of a board game, for training on every equivalent position.

The rules of tic-tac-toe, Go and Othello do not change under the 8 rotations and reflections
of the square board, nor Connect Four's under its left-right mirror, so the search's policy and
the game's outcome of a position hold, transformed alike, for each of its images. AlphaZero's
predecessor trained on random images of each position; `augment` does this per sample of a
minibatch, which also shows the network the images self-play rarely reaches (a tic-tac-toe
opening on the edge it never plays, say).

A symmetry is a permutation of the board's cells: image[p] = board[source[p]]. pgx's
observations put the cells first (`[H, W, planes]`) and number a move by its cell (row-major;
Go and Othello add a pass as the last action, which every symmetry keeps) or, in Connect Four,
by its column; the same `source` gathers the observation's cells, the legal mask and the
policy target.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["SYMMETRIC_GAMES", "augment", "board_symmetries"]

SYMMETRIC_GAMES = ("tic_tac_toe", "connect_four", "go_9x9", "go_19x19", "othello")
"""The pgx games `board_symmetries` knows (the others train without images)."""


def _dihedral(size: int) -> list[np.ndarray]:
    grid = np.arange(size * size).reshape(size, size)
    images = []
    for flip in (False, True):
        g = grid.T if flip else grid
        for turns in range(4):
            images.append(np.rot90(g, turns).reshape(-1))
    return images


def board_symmetries(env_id: str, obs_shape: tuple[int, ...],
                     num_actions: int) -> tuple[np.ndarray, np.ndarray] | None:
    """`(cell_sources[K, H*W], action_sources[K, A])` int32 for the K symmetries of `env_id`
    (identity first), or None for a game without known symmetries.

    Raises:
      ValueError: `obs_shape` / `num_actions` do not fit the board the game should have.
    """
    if env_id not in SYMMETRIC_GAMES:
        return None
    height, width = int(obs_shape[0]), int(obs_shape[1])
    cells = height * width
    if env_id == "connect_four":
        if num_actions != width:
            raise ValueError(f"connect_four: {num_actions} actions for a board {width} wide")
        columns = np.arange(width)
        board = np.arange(cells).reshape(height, width)
        cell_src = [board.reshape(-1), board[:, ::-1].reshape(-1)]
        action_src = [columns, columns[::-1]]
        return np.stack(cell_src).astype(np.int32), np.stack(action_src).astype(np.int32)
    if height != width or num_actions not in (cells, cells + 1):
        raise ValueError(f"{env_id}: observations {obs_shape} and {num_actions} actions are not "
                         "a square board's cells (and a pass)")
    cell_src = _dihedral(height)
    extra = [np.arange(cells, num_actions)]  # the pass, unchanged
    action_src = [np.concatenate([c, *extra]) for c in cell_src]
    return np.stack(cell_src).astype(np.int32), np.stack(action_src).astype(np.int32)


def augment(key: jax.Array, obs: jax.Array, legal: jax.Array, policy: jax.Array,
            symmetries: tuple[np.ndarray, np.ndarray]) -> tuple[jax.Array, ...]:
    """A random image per sample of `obs[N, H, W, C]`, `legal[N, A]` and `policy[N, A]`
    (values are unchanged by a symmetry)."""
    cell_src, action_src = (jnp.asarray(s) for s in symmetries)
    n = obs.shape[0]
    pick = jax.random.randint(key, (n,), 0, cell_src.shape[0])
    flat = obs.reshape(n, -1, *obs.shape[3:])
    obs = jnp.take_along_axis(flat, cell_src[pick].reshape(n, -1, *([1] * (flat.ndim - 2))),
                              axis=1).reshape(obs.shape)
    src = action_src[pick]
    return obs, jnp.take_along_axis(legal, src, axis=1), jnp.take_along_axis(policy, src, axis=1)
