"""The configuration of an AlphaZero run, its traced hyperparameters and its state.

`AlphaZeroConfig` trains by self-play on a pgx game (`tic_tac_toe`, `connect_four`,
`othello`, `go_9x9`, ...; two players) or by search-guided acting on a gymnax environment
(`CartPole-v1`, ...; one player, the environment's own dynamics as the model). Fields built
with `traced(...)` may be swept (`vmap`ped); the others fix shapes and programs.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from acjax.core.config import check_nonnegative, check_positive, flag, traced, traced_fields
from acjax.envs import EnvSpec, check_env_name, env_spec, make_env

__all__ = ["GAME_LENGTHS", "AlphaZeroConfig", "Hyperparams", "TrainState", "is_pgx_game",
           "pgx_games"]

GAME_LENGTHS = {"tic_tac_toe": 9, "connect_four": 42, "othello": 128, "go_9x9": 162,
                "hex": 121, "animal_shogi": 256, "gardner_chess": 256}
"""Moves a self-play game may take (the default `num_steps` of each game; pgx's own limits)."""

_TWO_PLAYER_EXCLUDED = ("2048", "kuhn_poker", "leduc_holdem", "sparrow_mahjong", "backgammon")


def pgx_games() -> tuple[str, ...]:
    """The pgx ids AlphaZero can play: deterministic two-player games (pgx must be installed)."""
    import pgx

    return tuple(g for g in pgx.available_envs()
                 if not g.startswith("minatar") and g not in _TWO_PLAYER_EXCLUDED)


def is_pgx_game(env: str) -> bool:
    """Whether `env` names a pgx game (by the ids pgx uses, e.g. tic_tac_toe)."""
    return "_" in env and "-" not in env or env in GAME_LENGTHS


@dataclasses.dataclass(frozen=True)
class AlphaZeroConfig:
    """Everything that defines an AlphaZero run."""

    env: str = "tic_tac_toe"
    """A pgx game id (tic_tac_toe, connect_four, othello, go_9x9, ...; needs pip install
    'acjax[search]') or a gymnax id (CartPole-v1, ...) whose step is the search's model."""
    algo: str = "alphazero"
    """The family's name (fixed)."""
    seed: int = 0
    """Seed of the run's PRNG key."""
    total_timesteps: int = 200_000
    """Environment steps (moves) to train for: num_envs * num_steps per update."""
    num_envs: int = 128
    """Games (or environments) played side by side."""
    num_steps: int = 9
    """Moves per update. pgx games: every update plays fresh games for this many moves (the
    presets: the game's limit, GAME_LENGTHS); only games that ended are learned from. gymnax:
    the rollout length."""
    search: Literal["puct", "gumbel"] = "puct"
    """puct: AlphaZero's PUCT selection with Dirichlet noise at the root
    (mctx.muzero_policy); gumbel: Gumbel MuZero's (mctx.gumbel_muzero_policy), sound with few
    simulations (the tic_tac_toe and connect_four presets')."""
    num_simulations: int = 32
    """Simulations per searched move."""
    eval_simulations: int = 0
    """Simulations per move when evaluating (0: num_simulations)."""
    c_puct: float = 1.25
    """The PUCT exploration constant (mctx's pb_c_init)."""
    dirichlet_fraction: float = 0.25
    """Weight of the Dirichlet noise on the root's prior (puct)."""
    dirichlet_alpha: float = 0.3
    """Concentration of that noise."""
    temperature_moves: int = 30
    """Moves of each game played and learned with temperature 1 (actions in proportion to the
    visits); after them the most visited move (temperature -> 0)."""
    gamma: float = 0.99
    """Discount of single-player (gymnax) returns; games are undiscounted."""
    n_step: int = 10
    """gymnax: bootstrapped n-step value targets."""
    replay_capacity: int = 100_000
    """Positions kept for training (the most recent ones)."""
    batch_size: int = 256
    """Positions per gradient step."""
    gradient_steps: int = 8
    """Gradient steps per update."""
    augment: bool = True
    """pgx games: learn each sampled position as a random image under the board's symmetries
    (tic-tac-toe, Go, Othello: the 8 rotations and reflections; Connect Four: the mirror)."""
    learning_rate: float = traced(1e-3)
    """Adam's step size."""
    value_coef: float = traced(1.0)
    """Weight of the value loss (z - v)^2."""
    weight_decay: float = traced(1e-4)
    """L2 penalty (decoupled weight decay, AdamW)."""
    value_target_mix: float = traced(0.0)
    """Weight m of the search's root value q in the value target (1 - m) z + m q (0:
    AlphaZero's outcome z alone; the average of z and q lowers the noise of z that
    exploratory moves late in a game bring)."""
    max_grad_norm: float = 1.0
    """Clip gradients to this global norm."""
    hidden_sizes: tuple[int, ...] = (128, 128)
    """The policy-value network's hidden layers (an MLP over the flattened observation)."""

    @property
    def two_player(self) -> bool:
        return is_pgx_game(self.env)

    @property
    def moves_per_update(self) -> int:
        return self.num_steps

    @property
    def batch_moves(self) -> int:
        return self.num_envs * self.moves_per_update

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.batch_moves

    def hyperparams(self) -> Hyperparams:
        return Hyperparams(**{n: jnp.float32(getattr(self, n)) for n in Hyperparams._fields})

    def spec(self) -> EnvSpec:
        if self.two_player:
            import pgx

            game = pgx.make(self.env)
            return EnvSpec(self.env, tuple(game.observation_shape), True, game.num_actions,
                           None, None, self.moves_per_update)
        env, env_params = make_env(self.env)
        return env_spec(env, env_params, self.env)

    def check_layout(self, layout) -> None:
        if layout.split == "envs" and layout.data_shards > 1:
            raise ValueError("device_split='envs': python -m acjax.alphazero runs whole agents "
                             "per device; pass --device-split agents or a number of seeds that "
                             "the devices divide")

    def validate(self) -> EnvSpec:
        """Raises `ValueError` naming the field, its value and the fix; returns the spec."""
        if self.two_player:
            try:
                games = pgx_games()
            except ImportError:
                raise ValueError(f"env={self.env!r} is a pgx game and needs pgx and mctx: pip "
                                 "install 'acjax[search]'") from None
            if self.env not in games:
                close = difflib.get_close_matches(self.env, games, n=3, cutoff=0.4)
                hint = (f"did you mean {', '.join(map(repr, close))}?" if close
                        else f"choose one of: {', '.join(games)}")
                raise ValueError(f"env={self.env!r} is not a pgx game AlphaZero plays; {hint}")
        else:
            check_env_name(self.env)
        if self.algo != "alphazero":
            raise ValueError(f"algo={self.algo!r}: python -m acjax.alphazero trains "
                             "'alphazero'; drop --algo")
        if self.search not in ("puct", "gumbel"):
            raise ValueError(f"search={self.search!r} is not one of 'puct', 'gumbel'; pass e.g. "
                             "--search puct")
        for name in ("num_simulations", "total_timesteps", "num_envs", "num_steps",
                     "replay_capacity", "batch_size", "gradient_steps", "n_step"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer; pass e.g. "
                                 f"{flag(name)} {getattr(AlphaZeroConfig(), name)}")
        for name in ("eval_simulations", "temperature_moves"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}={value!r} must be an integer >= 0; pass e.g. "
                                 f"{flag(name)} {getattr(AlphaZeroConfig(), name)}")
        check_positive("learning_rate", self.learning_rate, "typical values are 1e-4 to 3e-3")
        check_positive("c_puct", self.c_puct, "e.g. --c-puct 1.25")
        check_positive("max_grad_norm", self.max_grad_norm, "e.g. --max-grad-norm 1.0")
        check_positive("dirichlet_alpha", self.dirichlet_alpha, "e.g. --dirichlet-alpha 0.3")
        check_nonnegative("value_coef", self.value_coef)
        check_nonnegative("weight_decay", self.weight_decay)
        if not 0.0 <= self.value_target_mix <= 1.0:
            raise ValueError(f"value_target_mix={self.value_target_mix} must lie in [0, 1]; "
                             "pass e.g. --value-target-mix 0.5")
        if not 0.0 <= self.dirichlet_fraction <= 1.0:
            raise ValueError(f"dirichlet_fraction={self.dirichlet_fraction} must lie in [0, 1]; "
                             "pass e.g. --dirichlet-fraction 0.25")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma={self.gamma} must lie in [0, 1]; pass e.g. --gamma 0.99")
        if any(int(h) < 1 for h in self.hidden_sizes):
            raise ValueError(f"hidden_sizes={self.hidden_sizes!r} has a non-positive width; "
                             "pass e.g. --hidden-sizes 128 128")
        if self.num_updates < 1:
            raise ValueError(f"total_timesteps={self.total_timesteps} is smaller than one update "
                             f"({self.batch_moves} moves: num_envs * num_steps); raise "
                             "--total-timesteps")
        spec = self.spec()
        if not spec.discrete:
            raise ValueError(f"env={self.env!r} has continuous actions; AlphaZero's search "
                             "needs a discrete action space (e.g. CartPole-v1)")
        return spec


class Hyperparams(NamedTuple):
    """The traced hyperparameters of `AlphaZeroConfig`, `[]` float32 (or batched) arrays."""

    learning_rate: jax.Array
    value_coef: jax.Array
    weight_decay: jax.Array
    value_target_mix: jax.Array


if set(traced_fields(AlphaZeroConfig)) != set(Hyperparams._fields):  # pragma: no cover
    raise TypeError("AlphaZeroConfig's traced fields and Hyperparams disagree")


class TrainState(NamedTuple):
    """The whole state of an AlphaZero run, one pytree.

    Attributes:
      params: the policy-value network's parameters.
      opt_state: optax state.
      replay: `acjax.core.replay.ReplayState` of positions (observation, legal actions,
        search policy, value target, weight).
      env: gymnax only: the environments' state and observations carried between updates
        (`()` for games, which start fresh every update).
      key: raw PRNG key.
      update_step: `[]` int32.
    """

    params: Any
    opt_state: optax.OptState
    replay: Any
    env: Any
    key: jax.Array
    update_step: jax.Array
