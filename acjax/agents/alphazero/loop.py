"""AlphaZero's loop: search-guided self-play (or acting), a replay of positions, SGD.

One update is a pure function:

1. **Play.** pgx games: `num_envs` fresh games played to their end (`num_steps` moves, the
   game's limit), every move searched (`run_search`: PUCT or Gumbel, `num_simulations`), the
   move drawn from the visit policy N^(1/τ) (τ = 1 for the first `temperature_moves` moves,
   then the most visited move). gymnax: `num_steps` searched steps of `num_envs` environments
   that carry on across updates (auto-reset, the time limit a truncation).
2. **Targets.** The policy target is that visit policy. The value target is the game's
   outcome z for the player to move (+1, 0, -1); for gymnax the n-step return bootstrapped
   from the network's value of the true successor (at a truncation too), none after a
   termination. With `value_target_mix` m > 0 it is (1 - m) z + m q, q the search's value of
   the position.
3. **Learn.** The positions go into the replay (`acjax.core.replay`, finished games' moves
   weighted 1, the idle slots after a game's end 0); `gradient_steps` minibatches of
   `alphazero_loss` (cross-entropy + value_coef (z - v)²) with AdamW's weight decay as the L2,
   each sample a random image of its position under the board's symmetries (`augment`,
   `acjax.agents.alphazero.symmetry`).

`make_train(config)` returns the `Trainer` every family returns, so seeds, sweeps, devices,
checkpoints and `--resume` (bit-identical) work as for the other command lines. Its `report`
plays matches: win / draw / loss against a uniformly random player and, for tic-tac-toe, the
minimax player, for every other game the one-ply lookahead player (gymnax: the network's greedy
return beside the searched one).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from acjax.agents.alphazero import players
from acjax.agents.alphazero.config import AlphaZeroConfig, Hyperparams, TrainState
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
from acjax.agents.base import Trainer
from acjax.agents.common import chunk_size, evaluate_policy, gradient_update
from acjax.agents.rollout import reset_envs
from acjax.core import returns
from acjax.core.replay import make_replay_buffer
from acjax.core.search_losses import alphazero_loss
from acjax.envs import make_env
from acjax.networks.policy_value import make_policy_value

__all__ = ["MATCH_GAMES", "Position", "make_train"]

MATCH_GAMES = 100
"""Games per opponent in `Trainer.report` (each side starting half of them)."""


class Position(NamedTuple):
    """A position to learn from: observation, legal actions, the search's policy, the value
    target z, the search's root value q and the weight (0: an idle slot after a game
    ended)."""

    obs: jax.Array
    legal: jax.Array
    policy: jax.Array
    value: jax.Array
    root_value: jax.Array
    weight: jax.Array


def _flat(x: jax.Array) -> jax.Array:
    return x.reshape((-1,) + x.shape[2:])


def _root_value(out) -> jax.Array:
    """The search's value of its root `[B]` (for the player to move), float32."""
    return out.search_tree.summary().value.astype(jnp.float32)


def make_train(config: AlphaZeroConfig, *, num_reports: int = 20, axis_name=None,
               dense=None) -> Trainer:
    """The pure functions of an AlphaZero run (see the module docstring)."""
    del dense  # the policy-value MLP applies flax's dense layer
    if axis_name is not None:
        raise ValueError("AlphaZero runs whole agents per device (device_split='agents')")
    spec = config.validate()
    net = make_policy_value(spec.obs_shape, spec.num_actions, config.hidden_sizes,
                            bounded=config.two_player)
    apply = net.apply
    num_envs, num_steps, num_actions = config.num_envs, config.moves_per_update, spec.num_actions
    buffer = make_replay_buffer(config.replay_capacity)
    example = Position(jnp.zeros(spec.obs_shape, jnp.float32), jnp.ones(num_actions, bool),
                       jnp.zeros(num_actions, jnp.float32), jnp.float32(0), jnp.float32(0),
                       jnp.float32(0))
    eval_sims = config.eval_simulations or config.num_simulations
    updates_per_chunk = chunk_size(config.num_updates, num_reports)

    symmetries = None
    if config.two_player:
        import pgx

        game = pgx.make(config.env)
        model = pgx_recurrent_fn(game, apply)
        if config.augment:
            symmetries = board_symmetries(config.env, spec.obs_shape, num_actions)
    else:
        env, env_params = make_env(config.env)
        model = gymnax_recurrent_fn(env, env_params, apply, gamma=config.gamma)

    def optimizer(hp: Hyperparams) -> optax.GradientTransformation:
        return optax.chain(optax.clip_by_global_norm(config.max_grad_norm),
                           optax.adamw(hp.learning_rate, weight_decay=hp.weight_decay))

    def search(params, key, root, invalid, *, num_simulations, noise):
        return run_search(params, key, root, model, invalid, num_simulations=num_simulations,
                          search=config.search, c_puct=config.c_puct,
                          dirichlet_fraction=config.dirichlet_fraction if noise else 0.0,
                          dirichlet_alpha=config.dirichlet_alpha,
                          gumbel_scale=1.0 if noise else 0.0)

    def choose(key, out, legal, moves_done):
        """The policy target and the move played: puct draws from the visit policy (τ = 1 for
        the first temperature_moves moves, then the most visited); gumbel plays the action its
        Gumbel-perturbed sequential halving chose (the noise is its exploration)."""
        tau = jnp.where(moves_done < config.temperature_moves, 1.0, 0.0)
        target = search_policy(out, legal, search=config.search, temperature=tau)
        if config.search == "gumbel":
            return target, out.action.astype(jnp.int32)
        action = jax.random.categorical(key, jnp.where(target > 0, jnp.log(target), -jnp.inf))
        return target, action.astype(jnp.int32)

    # -- pgx games --------------------------------------------------------------------------

    def play_games(params, key):
        init_key, play_key = jax.random.split(key)
        state = jax.vmap(game.init)(jax.random.split(init_key, num_envs))

        def step(state, xs):
            t, k = xs
            k_search, k_act = jax.random.split(k)
            root = pgx_root(game, apply, params, state)
            out = search(params, k_search, root, ~state.legal_action_mask,
                         num_simulations=config.num_simulations, noise=True)
            target, action = choose(k_act, out, state.legal_action_mask,
                                    jnp.full(num_envs, t))
            live = ~(state.terminated | state.truncated)
            record = (state.observation.astype(jnp.float32), state.legal_action_mask, target,
                      _root_value(out), state.current_player, live)
            state = jax.vmap(game.step)(state, action)
            return state, (*record, state.rewards)

        state, (obs, legal, target, q, player, live, rewards) = jax.lax.scan(
            step, state, (jnp.arange(num_steps), jax.random.split(play_key, num_steps)))
        outcome = jnp.sum(rewards, axis=0)  # [B, 2]: each player's result
        z = jnp.take_along_axis(jnp.broadcast_to(outcome, (num_steps,) + outcome.shape),
                                player[..., None], axis=2)[..., 0]
        finished = state.terminated | state.truncated
        # Moves of games that ended; a game cut by num_steps has no outcome to learn.
        weight = (live & finished[None, :]).astype(jnp.float32)
        positions = Position(_flat(obs), _flat(legal), _flat(target), _flat(z), _flat(q),
                             _flat(weight))
        stats = {
            # For self-play, a game's "return" is 1 when it was decided and 0 for a draw.
            "episode_return_sum": jnp.sum(jnp.where(finished, jnp.abs(outcome[:, 0]), 0.0)),
            "episode_length_sum": jnp.sum(jnp.where(finished, jnp.sum(live, axis=0), 0)
                                          ).astype(jnp.float32),
            "episode_count": jnp.sum(finished).astype(jnp.float32),
            "first_player_score": jnp.mean(outcome[:, 0]),
        }
        return (), positions, stats

    # -- gymnax -------------------------------------------------------------------------------

    def act_env(params, carry, key):
        env_state, obs = carry

        def step(c, k):
            env_state, obs = c
            k_search, k_act, k_env = jax.random.split(k, 3)
            root = gymnax_root(apply, params, env_state.env_state, obs, num_actions)
            out = search(params, k_search, root, None, num_simulations=config.num_simulations,
                         noise=True)
            legal = jnp.ones((num_envs, num_actions), bool)
            target, action = choose(k_act, out, legal, env_state.episode_length)
            next_obs, env_state, reward, term, trunc, info = jax.vmap(
                env.step, in_axes=(0, 0, 0, None))(jax.random.split(k_env, num_envs), env_state,
                                                   action, env_params)
            out = (obs, target, _root_value(out), reward.astype(jnp.float32), term, trunc,
                   info["final_observation"].astype(jnp.float32), info["episode_return"],
                   info["episode_length"])
            return (env_state, next_obs.astype(jnp.float32)), out

        carry, (obs, target, q, reward, term, trunc, final, ep_ret, ep_len) = jax.lax.scan(
            step, (env_state, obs), jax.random.split(key, num_steps))
        _, next_values = apply(params, _flat(final))
        next_values = jax.lax.stop_gradient(next_values.reshape(num_steps, num_envs))
        z = returns.n_step_returns(reward, next_values, term, trunc, gamma=config.gamma,
                                   n=config.n_step)
        ones = jnp.ones_like(reward)
        legal = jnp.ones(target.shape, bool)
        positions = Position(_flat(obs), _flat(legal), _flat(target), _flat(z), _flat(q),
                             _flat(ones))
        done = (term | trunc).astype(jnp.float32)
        stats = {"episode_return_sum": jnp.sum(ep_ret * done),
                 "episode_length_sum": jnp.sum(ep_len * done).astype(jnp.float32),
                 "episode_count": jnp.sum(done)}
        return carry, positions, stats

    # -- the Trainer --------------------------------------------------------------------------

    def hp_or_default(hparams):
        return config.hyperparams() if hparams is None else hparams

    def init(key, hparams=None):
        hp = hp_or_default(hparams)
        key = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) \
            else key
        init_key, env_key, run_key = jax.random.split(key, 3)
        params = net.init(init_key)
        env_carry = ()
        if not config.two_player:
            obs, env_state = reset_envs(env, env_params, env_key, num_envs)
            env_carry = (env_state, obs.astype(jnp.float32))
        return TrainState(params, optimizer(hp).init(params), buffer.init(example), env_carry,
                          run_key, jnp.int32(0))

    def update(state: TrainState, hparams=None):
        hp = hp_or_default(hparams)
        key, play_key, sgd_key = jax.random.split(state.key, 3)
        if config.two_player:
            env_carry, positions, stats = play_games(state.params, play_key)
        else:
            env_carry, positions, stats = act_env(state.params, state.env, play_key)
        replay = buffer.add(state.replay, positions)
        opt = optimizer(hp)

        def loss_fn(params, batch: Position):
            logits, values = apply(params, batch.obs)
            mix = hp.value_target_mix
            target_values = (1.0 - mix) * batch.value + mix * batch.root_value
            return alphazero_loss(policy_logits=logits, values=values,
                                  target_policies=batch.policy, target_values=target_values,
                                  legal_actions=batch.legal, value_coef=hp.value_coef,
                                  weights=batch.weight)

        def sgd(carry, k):
            params, opt_state = carry
            k_sample, k_image = jax.random.split(k)
            batch = buffer.sample(replay, k_sample, config.batch_size)
            if symmetries is not None:
                obs, legal, policy = augment(k_image, batch.obs, batch.legal, batch.policy,
                                             symmetries)
                batch = batch._replace(obs=obs, legal=legal, policy=policy)
            params, opt_state, metrics = gradient_update(loss_fn, opt, params, opt_state, batch)
            return (params, opt_state), metrics

        (params, opt_state), metrics = jax.lax.scan(
            sgd, (state.params, state.opt_state),
            jax.random.split(sgd_key, config.gradient_steps))
        metrics = {k: jnp.mean(v) for k, v in metrics.items()}
        state = TrainState(params, opt_state, replay, env_carry, key, state.update_step + 1)
        return state, {**metrics, **stats}

    def run_updates(state, hparams, n):
        def body(s, _):
            return update(s, hparams)

        return jax.lax.scan(body, state, None, length=n)

    def train_chunk(state, hparams=None):
        return run_updates(state, hp_or_default(hparams), updates_per_chunk)

    def train(key, hparams=None):
        hp = hp_or_default(hparams)
        return run_updates(init(key, hp), hp, config.num_updates)

    def searched_player(params):
        def player(key, state):
            root = pgx_root(game, apply, params, state)
            out = search(params, key, root, ~state.legal_action_mask,
                         num_simulations=eval_sims, noise=False)
            return best_action(out, state.legal_action_mask, search=config.search)

        return player

    def act(state: TrainState, obs, key, deterministic: bool = True):
        """The network's own policy (no search; every action treated as legal)."""
        logits, _ = apply(state.params, jnp.asarray(obs, jnp.float32).reshape(
            (-1,) + spec.obs_shape))
        action = jnp.argmax(logits, axis=-1) if deterministic else jax.random.categorical(
            key, logits)
        return action.reshape(jnp.shape(obs)[:-len(spec.obs_shape)] or ())

    def evaluate(state: TrainState, key, num_episodes: int = 10):
        """pgx: the searched player's score against a random player (+1 / 0 / -1 per game,
        sides alternated) and the games' lengths; gymnax: the searched policy's returns."""
        if config.two_player:
            return players.match_scores(game, searched_player(state.params),
                                        players.random_player, key, num_episodes)
        return _evaluate_searched_gymnax(state.params, key, num_episodes)

    def _evaluate_searched_gymnax(params, key, num_episodes):
        reset_key, run_key = jax.random.split(key)
        obs, env_state = reset_envs(env, env_params, reset_key, num_episodes)
        zeros = jnp.zeros((num_episodes,), jnp.float32)

        def step(carry, k):
            obs, env_state, ret, length, finished = carry
            k_search, k_env = jax.random.split(k)
            root = gymnax_root(apply, params, env_state.env_state, obs.astype(jnp.float32),
                               num_actions)
            out = search(params, k_search, root, None, num_simulations=eval_sims, noise=False)
            action = best_action(out, None, search=config.search)
            obs, env_state, reward, term, trunc, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(k_env, num_episodes), env_state, action, env_params)
            live = ~finished
            ret = ret + jnp.where(live, reward.astype(jnp.float32), 0.0)
            length = length + live.astype(jnp.int32)
            return (obs, env_state, ret, length, finished | term | trunc), None

        init_carry = (obs, env_state, zeros, jnp.zeros((num_episodes,), jnp.int32), zeros > 0)
        (_, _, ret, length, _), _ = jax.lax.scan(
            step, init_carry, jax.random.split(run_key, spec.max_episode_steps))
        return ret, length

    def report(state: TrainState, key) -> dict[str, jax.Array]:
        """Matches (pgx) or the network's greedy return (gymnax), as scalars."""
        if not config.two_player:
            returns_, _ = evaluate_policy(
                lambda obs, k: act(state, obs, k, True), env, env_params, key,
                num_episodes=MATCH_GAMES // 5, max_steps=spec.max_episode_steps)
            return {"network_greedy_return": jnp.mean(returns_)}
        me = searched_player(state.params)
        strong = (players.minimax_player if config.env == "tic_tac_toe"
                  else players.lookahead_player(game))
        strong_name = "minimax" if config.env == "tic_tac_toe" else "lookahead"
        out = {}
        for name, opponent, k in (("random", players.random_player, 0),
                                  (strong_name, strong, 1)):
            wins, draws, losses = players.play_match(game, me, opponent,
                                                     jax.random.fold_in(key, k), MATCH_GAMES)
            out |= {f"{name}_wins": wins, f"{name}_draws": draws, f"{name}_losses": losses}
        return out

    return Trainer(config, spec, net, init, update, train_chunk, train, evaluate, act,
                   updates_per_chunk, report)
