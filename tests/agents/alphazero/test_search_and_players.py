"""AlphaZero's search model and the game players: legal moves only, the minimax player on known
tic-tac-toe positions, the one-ply lookahead on Connect Four, the gymnax model's time limit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pgx = pytest.importorskip("pgx")
pytest.importorskip("mctx")

from acjax.agents.alphazero import players
from acjax.agents.alphazero.search import (
    gymnax_recurrent_fn,
    gymnax_root,
    pgx_recurrent_fn,
    pgx_root,
    run_search,
)


def _linear_net(obs_size: int, num_actions: int, seed: int = 0):
    """A random linear policy-value network: enough for the search's bookkeeping."""
    k1, k2 = jax.random.split(jax.random.key(seed))
    params = {"w": jax.random.normal(k1, (obs_size, num_actions)),
              "v": jax.random.normal(k2, (obs_size,)) * 0.1}

    def apply(params, obs):
        x = obs.reshape(obs.shape[0], -1).astype(jnp.float32)
        return x @ params["w"], jnp.tanh(x @ params["v"])

    return params, apply


def _random_positions(env, key, num: int, max_moves: int):
    """`num` live positions after 0 ... max_moves - 1 random legal moves."""
    init_key, key = jax.random.split(key)
    state = jax.vmap(env.init)(jax.random.split(init_key, num))
    depth = jax.random.randint(key, (num,), 0, max_moves)

    def body(i, carry):
        state, key = carry
        key, k = jax.random.split(key)
        action = players.random_player(k, state)
        stepped = jax.vmap(env.step)(state, action)
        keep = (i < depth) & ~stepped.terminated
        state = jax.tree.map(lambda new, old: jnp.where(
            keep.reshape((-1,) + (1,) * (new.ndim - 1)), new, old), stepped, state)
        return state, key

    state, _ = jax.lax.fori_loop(0, max_moves, body, (state, key))
    return state


@pytest.mark.parametrize(("game", "search"), [("tic_tac_toe", "puct"),
                                              ("tic_tac_toe", "gumbel"),
                                              ("connect_four", "puct"),
                                              ("connect_four", "gumbel")])
def test_searched_moves_are_always_legal(game, search):
    """2,500 searched positions per case (10^4 in all): the search's action and the most
    visited action are legal, and illegal actions get no visit."""
    env = pgx.make(game)
    params, apply = _linear_net(int(np.prod(env.observation_shape)), env.num_actions)
    recurrent_fn = pgx_recurrent_fn(env, apply)

    @jax.jit
    def searched(key):
        pos_key, search_key = jax.random.split(key)
        state = _random_positions(env, pos_key, 500, 8 if game == "tic_tac_toe" else 30)
        root = pgx_root(env, apply, params, state)
        out = run_search(params, search_key, root, recurrent_fn, ~state.legal_action_mask,
                         num_simulations=8, search=search)
        visits = out.search_tree.summary().visit_counts
        return state.legal_action_mask, out.action, visits

    for i in range(5):
        legal, action, visits = searched(jax.random.key(i))
        legal, action, visits = np.asarray(legal), np.asarray(action), np.asarray(visits)
        assert legal[np.arange(len(action)), action].all()
        assert (visits[~legal] == 0).all()
        assert legal[np.arange(len(action)), visits.argmax(-1)].all()


def test_root_priors_of_illegal_moves_are_the_smallest_float():
    env = pgx.make("tic_tac_toe")
    params, apply = _linear_net(18, 9)
    state = _random_positions(env, jax.random.key(3), 64, 6)
    root = pgx_root(env, apply, params, state)
    probs = jax.nn.softmax(root.prior_logits)
    assert float(jnp.max(jnp.where(state.legal_action_mask, 0.0, probs))) == 0.0


def _ttt_state(moves):
    env = pgx.make("tic_tac_toe")
    state = env.init(jax.random.key(0))
    for m in moves:
        state = env.step(state, m)
    return env, jax.tree.map(lambda x: x[None], state)


def test_minimax_values_of_known_positions():
    values = players.minimax_values()
    assert values[0] == 0  # the empty board: perfect play draws
    # Mover has 0 and 1, opponent 3 and 4: the mover completes the top row and wins.
    own, opp = np.zeros(9, bool), np.zeros(9, bool)
    own[[0, 1]], opp[[3, 4]] = True, True
    assert values[int(players.tic_tac_toe_index(own, opp))] == 1
    # The opponent (0, 4, 6) threatens 2, 3 and 8; the mover (1, 5) blocks one and loses.
    own, opp = np.zeros(9, bool), np.zeros(9, bool)
    own[[1, 5]], opp[[0, 4, 6]] = True, True
    assert values[int(players.tic_tac_toe_index(own, opp))] == -1


def test_minimax_player_wins_blocks_and_never_loses():
    # X (to move) has 0 and 1 with 2 open: takes 2.
    env, state = _ttt_state([0, 3, 1, 4])
    assert int(players.minimax_player(jax.random.key(0), state)[0]) == 2
    # O to move after X's 0, 1: must block at 2.
    env, state = _ttt_state([0, 4, 1])
    assert int(players.minimax_player(jax.random.key(0), state)[0]) == 2
    match = jax.jit(lambda k: players.play_match(env, players.minimax_player,
                                                 players.random_player, k, 200))
    wins, draws, losses = map(int, match(jax.random.key(1)))
    assert losses == 0 and wins + draws == 200 and wins > 150
    wins, draws, losses = map(int, jax.jit(lambda k: players.play_match(
        env, players.minimax_player, players.minimax_player, k, 100))(jax.random.key(2)))
    assert draws == 100


def test_lookahead_player_on_connect_four():
    env = pgx.make("connect_four")
    state = env.init(jax.random.key(0))
    for column in (0, 1, 0, 1, 0):  # first player: three in column 0; second: two in 1
        state = env.step(state, column)
    batched = jax.tree.map(lambda x: x[None], state)
    player = players.lookahead_player(env)
    # Second player to move: it must block column 0.
    assert int(player(jax.random.key(0), batched)[0]) == 0
    state = env.step(state, 1)  # second player: three in column 1; first to move wins in 0
    batched = jax.tree.map(lambda x: x[None], state)
    assert int(player(jax.random.key(0), batched)[0]) == 0
    wins, _, _ = map(int, jax.jit(lambda k: players.play_match(
        env, player, players.random_player, k, 100))(jax.random.key(3)))
    assert wins >= 90


def test_gymnax_model_ignores_the_time_limit_and_termination_is_absorbing():
    import gymnax

    env, env_params = gymnax.make("CartPole-v1")
    params, apply = _linear_net(4, 2)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(jax.random.key(0), 2),
                                                       env_params)
    state = state.replace(time=jnp.array([499, 0]))  # the first is one step from the limit
    root = gymnax_root(apply, params, state, obs, 2)
    recurrent_fn = gymnax_recurrent_fn(env, env_params, apply, gamma=0.99)
    out, node = recurrent_fn(params, jax.random.key(1), jnp.array([0, 0]), root.embedding)
    np.testing.assert_allclose(out.discount, [0.99, 0.99])  # the limit does not end it
    np.testing.assert_allclose(out.reward, [1.0, 1.0])
    # A terminated node stays terminated: no reward, no discount.
    dead = node._replace(terminated=jnp.array([True, False]))
    out, _ = recurrent_fn(params, jax.random.key(2), jnp.array([1, 1]), dead)
    np.testing.assert_allclose(out.reward, [0.0, 1.0])
    np.testing.assert_allclose(out.discount, [0.0, 0.99])


def _ttt_move_values(obs, legal):
    """Minimax value of every move of tic-tac-toe positions `obs[N, 3, 3, 2]` (-9: illegal)."""
    table = players.minimax_values()
    obs = np.asarray(obs).reshape(len(obs), 9, 2)
    out = np.full((len(obs), 9), -9)
    for n in range(len(obs)):
        for a in np.flatnonzero(np.asarray(legal[n])):
            own, opp = obs[n, :, 0].copy(), obs[n, :, 1]
            own[a] = True
            out[n, a] = -table[int(players.tic_tac_toe_index(opp, own))]
    return out


def test_tic_tac_toe_images_keep_legal_moves_and_minimax_values():
    from acjax.agents.alphazero.symmetry import augment, board_symmetries

    env = pgx.make("tic_tac_toe")
    symmetries = board_symmetries("tic_tac_toe", (3, 3, 2), 9)
    assert symmetries[0].shape == (8, 9)
    assert len({tuple(s) for s in symmetries[0]}) == 8  # 8 distinct permutations
    state = _random_positions(env, jax.random.key(5), 64, 7)
    obs = state.observation.astype(jnp.float32)
    values = _ttt_move_values(obs, state.legal_action_mask)
    policy = jnp.asarray(values, jnp.float32)  # any per-move array travels the same way
    img_obs, img_legal, img_values = augment(jax.random.key(6), obs, state.legal_action_mask,
                                             policy, symmetries)
    img_obs = np.asarray(img_obs)
    # An image's legal moves are its empty cells, and its moves' minimax values are the
    # original's moved alike.
    np.testing.assert_array_equal(np.asarray(img_legal),
                                  ~img_obs.reshape(64, 9, 2).any(-1).astype(bool))
    np.testing.assert_array_equal(_ttt_move_values(img_obs, img_legal), np.asarray(img_values))
    assert (img_obs != np.asarray(obs)).any()  # not all identities


def test_connect_four_mirror_and_games_without_symmetries():
    from acjax.agents.alphazero.symmetry import augment, board_symmetries

    env = pgx.make("connect_four")
    cells, actions = board_symmetries("connect_four", tuple(env.observation_shape), 7)
    state = _random_positions(env, jax.random.key(7), 32, 20)
    obs = state.observation.astype(jnp.float32)
    policy = jnp.tile(jnp.arange(7.0), (32, 1))
    for pick in range(2):  # identity, mirror
        one = (cells[pick:pick + 1], actions[pick:pick + 1])
        img_obs, img_legal, img_policy = augment(jax.random.key(0), obs,
                                                 state.legal_action_mask, policy, one)
        flip = (lambda x, axis: np.flip(x, axis)) if pick else (lambda x, axis: x)
        np.testing.assert_array_equal(np.asarray(img_obs), flip(np.asarray(obs), 2))
        np.testing.assert_array_equal(np.asarray(img_legal),
                                      flip(np.asarray(state.legal_action_mask), 1))
        np.testing.assert_array_equal(np.asarray(img_policy), flip(np.asarray(policy), 1))
    assert board_symmetries("animal_shogi", (4, 3, 194), 132) is None
    go = board_symmetries("go_9x9", (9, 9, 17), 82)
    assert go[1].shape == (8, 82) and (go[1][:, 81] == 81).all()  # the pass stays
