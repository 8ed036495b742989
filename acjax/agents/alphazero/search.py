"""The search's model: `mctx` root and recurrent functions from a game or an environment.

AlphaZero searches with the true rules as its model. These builders turn a pgx game (two
players, zero-sum, alternating moves) or a gymnax environment (one player, its own `step` as
a perfect simulator) and any policy-value network into what `mctx.muzero_policy` and
`mctx.gumbel_muzero_policy` take:

    root = pgx_root(env, apply, params, state)                 # mctx.RootFnOutput
    recurrent_fn = pgx_recurrent_fn(env, apply)                # mctx.RecurrentFn
    out = mctx.muzero_policy(params, key, root, recurrent_fn, num_simulations=32,
                             invalid_actions=~state.legal_action_mask)

`apply(params, obs[B, ...]) -> (logits[B, A], value[B])` is the network: the value of the
position for the player to move, in [-1, 1] for games. Illegal actions' logits are set to the
smallest float before they reach the search, so neither the prior nor a sampled move can pick
them; pass `invalid_actions` as above so the search's own selection masks them too.

Two players: the recurrent function's reward is the mover's reward for its move, and its
discount is -1 (the next value is the opponent's, so it changes sign) or 0 once the game is
over. One player (gymnax): reward and discount γ (0 once the episode terminated); the model
steps the environment without its time limit (`step_env` of the unwrapped environment, never
auto-resetting), so a search near the limit bootstraps from the value as the trainers do at a
truncation, and a terminated state stays absorbing (reward 0, discount 0).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["SEARCHES", "GymnaxNode", "best_action", "gymnax_recurrent_fn", "gymnax_root",
           "mask_logits", "pgx_recurrent_fn", "pgx_root", "run_search", "search_policy",
           "without_time_limit"]

SEARCHES = ("puct", "gumbel")
"""`run_search`'s searches: AlphaZero's PUCT (`mctx.muzero_policy`) and Gumbel MuZero's
(`mctx.gumbel_muzero_policy`, sound with few simulations)."""

Apply = Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]]


def _mctx():
    try:
        import mctx
    except ImportError as err:  # pragma: no cover - the extra is missing
        raise ImportError("AlphaZero's search needs mctx: pip install 'acjax[search]'") from err
    return mctx


def mask_logits(logits: jax.Array, legal: jax.Array) -> jax.Array:
    """`logits` with illegal actions at the dtype's smallest value (max-subtracted first, so
    the legal ones stay finite and comparable)."""
    logits = logits - jnp.max(logits, axis=-1, keepdims=True)
    return jnp.where(legal, logits, jnp.finfo(logits.dtype).min)


def pgx_root(env, apply: Apply, params: Any, state) -> Any:
    """`mctx.RootFnOutput` for a batch of pgx states `[B]` (the embedding is the state)."""
    logits, value = apply(params, state.observation)
    return _mctx().RootFnOutput(prior_logits=mask_logits(logits, state.legal_action_mask),
                                value=value, embedding=state)


def pgx_recurrent_fn(env, apply: Apply) -> Callable[..., Any]:
    """`recurrent_fn(params, key, action[B], state[B]) -> (RecurrentFnOutput, state)` for a
    two-player pgx game: the game's own `step` is the model."""
    mctx = _mctx()

    def recurrent_fn(params, key, action, state):
        del key
        mover = state.current_player
        state = jax.vmap(env.step)(state, action)
        logits, value = apply(params, state.observation)
        reward = jnp.take_along_axis(state.rewards, mover[:, None], axis=1)[:, 0]
        over = state.terminated | state.truncated
        out = mctx.RecurrentFnOutput(
            reward=reward,
            discount=jnp.where(over, 0.0, -1.0).astype(value.dtype),
            prior_logits=mask_logits(logits, state.legal_action_mask),
            value=jnp.where(over, 0.0, value),
        )
        return out, state

    return recurrent_fn


def without_time_limit(env_params):
    """gymnax parameters whose episode limit (`max_steps_in_episode`) never ends an episode
    inside the search: the model's `done` is then termination alone."""
    if hasattr(env_params, "max_steps_in_episode"):
        return env_params.replace(max_steps_in_episode=2**30)
    return env_params


class GymnaxNode(NamedTuple):
    """A search node of a gymnax environment: its state `[B, ...]`, observation `[B, ...]`
    and whether the episode terminated on the way there `[B]`."""

    env_state: Any
    obs: jax.Array
    terminated: jax.Array


def gymnax_root(apply: Apply, params: Any, env_state, obs: jax.Array, num_actions: int) -> Any:
    """`mctx.RootFnOutput` for a batch of gymnax states (every action legal)."""
    logits, value = apply(params, obs)
    del num_actions
    node = GymnaxNode(env_state, obs, jnp.zeros(obs.shape[:1], bool))
    return _mctx().RootFnOutput(prior_logits=logits - jnp.max(logits, -1, keepdims=True),
                                value=value, embedding=node)


def gymnax_recurrent_fn(env, env_params, apply: Apply, *, gamma: float) -> Callable[..., Any]:
    """`recurrent_fn` for a gymnax environment: `env.step_env` (the unwrapped dynamics,
    without the time limit or auto-reset) is the model; rewards and discounts γ, 0 after a
    termination (absorbing)."""
    mctx = _mctx()
    model_params = without_time_limit(env_params)

    def recurrent_fn(params, key, action, node: GymnaxNode):
        keys = jax.random.split(key, action.shape[0])
        obs, env_state, reward, done, _ = jax.vmap(env.step_env, in_axes=(0, 0, 0, None))(
            keys, node.env_state, action, model_params)
        terminated = node.terminated | done.astype(bool)
        logits, value = apply(params, obs.astype(jnp.float32))
        reward = jnp.where(node.terminated, 0.0, reward.astype(value.dtype))
        out = mctx.RecurrentFnOutput(
            reward=reward,
            discount=jnp.where(terminated, 0.0, gamma).astype(value.dtype),
            prior_logits=logits - jnp.max(logits, -1, keepdims=True),
            value=jnp.where(terminated, 0.0, value),
        )
        return out, GymnaxNode(env_state, obs.astype(jnp.float32), terminated)

    return recurrent_fn


def run_search(params: Any, key: jax.Array, root, recurrent_fn, invalid_actions, *,
               num_simulations: int, search: str = "puct", c_puct: float = 1.25,
               dirichlet_fraction: float = 0.25, dirichlet_alpha: float = 0.3,
               gumbel_scale: float = 1.0, max_num_considered_actions: int = 16) -> Any:
    """One batched search from `root`: `mctx.PolicyOutput` (its `search_tree.summary()` has
    the root's `visit_counts[B, A]` and `value[B]`).

    Args:
      params, key, root, recurrent_fn: as `mctx`'s policies take them.
      invalid_actions: bool `[B, A]` (True: illegal), or None (every action legal).
      num_simulations: >= 1 simulations per root.
      search: "puct" (AlphaZero: PUCT selection with `c_puct` as mctx's `pb_c_init`,
        Dirichlet noise at the root) or "gumbel" (Gumbel MuZero: sequential halving over at
        most `max_num_considered_actions` sampled actions; `gumbel_scale` 0 for a
        deterministic search when evaluating).
    """
    mctx = _mctx()
    if search not in SEARCHES:
        raise ValueError(f"search={search!r} is not one of {', '.join(map(repr, SEARCHES))}; "
                         "pass e.g. --search puct")
    if int(num_simulations) < 1:
        raise ValueError(f"num_simulations={num_simulations} must be >= 1; pass e.g. "
                         "--num-simulations 32")
    if search == "puct":
        return mctx.muzero_policy(
            params, key, root, recurrent_fn, num_simulations=int(num_simulations),
            invalid_actions=invalid_actions, dirichlet_fraction=dirichlet_fraction,
            dirichlet_alpha=dirichlet_alpha, pb_c_init=c_puct)
    return mctx.gumbel_muzero_policy(
        params, key, root, recurrent_fn, num_simulations=int(num_simulations),
        invalid_actions=invalid_actions, gumbel_scale=gumbel_scale,
        max_num_considered_actions=max_num_considered_actions)


def search_policy(out, legal: jax.Array | None, *, search: str,
                  temperature: jax.Array | float = 1.0) -> jax.Array:
    """The search's improved policy `[B, A]`, the network's policy target.

    puct: the visit counts raised to 1/τ over the legal actions (`visit_count_policy`; τ -> 0
    the most visited move). gumbel: mctx's `action_weights` (softmax of the prior logits plus
    the completed Q-values, Gumbel MuZero's policy improvement), whatever the temperature: its
    visit counts follow sequential halving and are no policy.
    """
    from acjax.core.search_losses import visit_count_policy

    visits = out.search_tree.summary().visit_counts
    if legal is None:
        legal = jnp.ones(visits.shape, bool)
    if search == "gumbel":
        weights = jnp.where(legal, out.action_weights, 0.0)
        return weights / jnp.maximum(jnp.sum(weights, axis=-1, keepdims=True), 1e-30)
    tau = jnp.broadcast_to(jnp.asarray(temperature, jnp.float32), visits.shape[:1])
    return jax.vmap(lambda v, m, t: visit_count_policy(v, m, temperature=t))(visits, legal, tau)


def best_action(out, legal: jax.Array | None, *, search: str) -> jax.Array:
    """The move to play greedily `[B]` int32: puct the most visited legal move, gumbel the
    action sequential halving selected (`out.action`)."""
    if search == "gumbel":
        return out.action.astype(jnp.int32)
    visits = out.search_tree.summary().visit_counts
    if legal is not None:
        visits = jnp.where(legal, visits, -1)
    return jnp.argmax(visits, axis=-1).astype(jnp.int32)
