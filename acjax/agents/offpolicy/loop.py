"""The off-policy loop SAC, TD3 and DDPG share.

One *iteration* of an off-policy run is a pure function: step `num_envs` vmapped environments
`num_steps` times (uniformly random actions before `learning_starts` env steps, the policy with
its exploration afterwards), write the transitions to a replay buffer that lives in the
training state, then take `gradient_steps` updates, each on a minibatch of `batch_size`
transitions sampled uniformly from the buffer. The update-to-data ratio is `gradient_steps /
(num_envs * num_steps)`.

A stored transition is `(s, a, r, terminated, s')`: `a` is the policy's action in [-1, 1]
(rescaled to the environment's bounds only when stepping it), and `s'` is the TRUE next
observation (gymnax's `info["final_observation"]` where an episode ended, not the observation
the environment reset to). Only termination stops bootstrapping: a time-limit truncation still
bootstraps from `s'`.

The algorithms differ only in their parameters and in one gradient step; each describes them
with an `Agent` (`acjax.agents.offpolicy.sac`, `.td3`), and `make_offpolicy_train` builds the
same `acjax.agents.base.Trainer` as the on-policy loop, so seeds, sweeps, devices, the command
line, checkpoints and `load_policy` (`acjax.run`) work unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from acjax.agents.base import Trainer
from acjax.agents.common import chunk_size, evaluate_policy, gradient_update
from acjax.agents.offpolicy.config import DATA_PARALLEL_ERROR, OffPolicyConfig
from acjax.core import offpolicy_losses as losses
from acjax.core.replay import ReplayState, make_replay_buffer
from acjax.envs import EnvSpec, make_env

__all__ = [
    "ActingState",
    "Agent",
    "TrainState",
    "Transition",
    "cond_update",
    "critic_update",
    "episode_returns",
    "make_offpolicy_train",
    "make_optimizer",
    "rescale_actions",
]


# ----------------------------------------------------------------------------------------------
# State
# ----------------------------------------------------------------------------------------------


class Transition(NamedTuple):
    """One replay item (leaves gain a leading `[N]` axis in batches).

    Attributes:
      obs: `[*obs_shape]` float32, s.
      action: `[action_dim]` float32, a in the policy's space [-1, 1].
      reward: `[]` float32, r.
      terminated: `[]` bool, s' is terminal (truncation is NOT stored: it bootstraps).
      next_obs: `[*obs_shape]` float32, the true next observation s'.
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array
    next_obs: jax.Array


class ActingState(NamedTuple):
    """What the environments carry from one iteration to the next.

    Attributes:
      env_state: batched gymnax state, leaves `[B, ...]`.
      obs: `[B, *obs_shape]` current observations.
      noise: `[B, action_dim]` float32 exploration-noise state (Ornstein-Uhlenbeck; zeros for
        memoryless exploration), reset to zero where an episode ends.
    """

    env_state: Any
    obs: jax.Array
    noise: jax.Array


class TrainState(NamedTuple):
    """The whole state of an off-policy run, one pytree.

    Attributes:
      params: the algorithm's parameters (actor, critics, target networks, SAC's log_alpha);
        what `load_policy` and `params_fingerprint` see.
      opt_state: the algorithm's optimizer states.
      env: environment states, current observations, exploration noise.
      replay: the replay buffer's contents.
      key: PRNG key (raw `uint32[2]`).
      update_step: `[]` int32, iterations done.
      gradient_step: `[]` int32, gradient updates (critic steps) done.
    """

    params: Any
    opt_state: Any
    env: ActingState
    replay: ReplayState
    key: jax.Array
    update_step: jax.Array
    gradient_step: jax.Array


class Agent(NamedTuple):
    """What an off-policy algorithm adds to the shared loop: its networks and one update.

    Actions are in the policy's space [-1, 1] throughout; `hparams` is the algorithm's
    `Hyperparams`.

    Attributes:
      networks: the algorithm's network functions (the `Trainer.network` field).
      init: `(key, obs[*obs_shape], action[action_dim], hparams) -> (params, opt_state)`.
      explore: `(params, obs[B, ...], noise[B, D], key, hparams) -> (action[B, D], noise')`,
        the behaviour policy after `learning_starts`.
      greedy: `(params, obs[..., *obs_shape]) -> action[..., D]`, the evaluation policy.
      sample: `(params, obs[..., *obs_shape], key, hparams) -> action[..., D]`, a stochastic
        action without noise state (`Trainer.act(..., deterministic=False)`).
      learn: `(params, opt_state, batch: Transition[N], key, count, index, hparams) ->
        (params, opt_state, metrics)`, one gradient step; `count` (`[]` int32) is the number
        of gradient steps done before this one, `index` (`[]` int32) its position in the
        iteration (0 ... gradient_steps - 1).
      delayed_metrics: names of metrics produced only on some steps (TD3's delayed actor
        updates); `learn` reports them as zeros on the other steps together with
        `actor_updates` (1 or 0), and an iteration's value is their mean over the steps
        that produced them.
    """

    networks: Any
    init: Callable[..., tuple[Any, Any]]
    explore: Callable[..., tuple[jax.Array, jax.Array]]
    greedy: Callable[..., jax.Array]
    sample: Callable[..., jax.Array]
    learn: Callable[..., tuple[Any, Any, dict[str, jax.Array]]]
    delayed_metrics: tuple[str, ...] = ()


# ----------------------------------------------------------------------------------------------
# Small pure pieces
# ----------------------------------------------------------------------------------------------


def make_optimizer(
    learning_rate: chex.Numeric, max_grad_norm: float | None = None
) -> optax.GradientTransformation:
    """Adam (optionally after global-norm clipping) on one network's parameters.

    The parameters are updated as one flat vector: a handful of large operations instead of a
    few per leaf (faster to compile and to run).
    """
    adam = optax.adam(learning_rate)
    if max_grad_norm is not None:
        adam = optax.chain(optax.clip_by_global_norm(max_grad_norm), adam)
    return optax.flatten(adam)


def rescale_actions(action: jax.Array, spec: EnvSpec) -> jax.Array:
    """Maps actions `[..., D]` from [-1, 1] to the environment's bounds `[low, high]`."""
    low = jnp.broadcast_to(jnp.asarray(spec.action_low, jnp.float32), action.shape)
    high = jnp.broadcast_to(jnp.asarray(spec.action_high, jnp.float32), action.shape)
    return low + (action + 1.0) * (0.5 * (high - low))


def cond_update(pred: jax.Array, update_fn: Callable, operand: Any):
    """`update_fn(operand) -> (operand', metrics)` where `pred`, else `(operand, zero metrics)`.

    A `lax.cond`: the skipped step costs nothing unless `pred` is batched (under `vmap` both
    branches run and the result is selected).
    """
    shapes = jax.eval_shape(update_fn, operand)[1]

    def skip(x):
        return x, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    return jax.lax.cond(pred, update_fn, skip, operand)


def critic_update(
    critic, optimizer: optax.GradientTransformation, params, opt_state, batch: Transition,
    target: jax.Array,
) -> tuple[Any, optax.OptState, dict[str, jax.Array]]:
    """One optimizer step of the critic(s) `critic.apply(params, obs, action) -> q[K, N]`
    towards the targets `target[N]` (`losses.critic_loss`), as SAC, TD3 and DDPG take it.

    Returns `(params, opt_state, metrics)` with the scalars `critic_loss`, `q_mean`,
    `target_mean`, `td_error_abs` and `critic_grad_norm`.
    """

    def loss(critic_params):
        q = critic.apply(critic_params, batch.obs, batch.action)  # [K, N]
        return losses.critic_loss(q, target, ensemble_axis=0)

    params, opt_state, metrics = gradient_update(loss, optimizer, params, opt_state)
    # The trainer's names for the loss's metrics (metrics.csv's columns).
    names = {"critic_loss": "critic_loss", "q_mean": "critic_q_mean",
             "target_mean": "critic_target_mean", "td_error_abs": "critic_td_error_abs",
             "critic_grad_norm": "grad_norm"}
    return params, opt_state, {ours: metrics[theirs] for ours, theirs in names.items()}


def episode_returns(metrics: dict[str, jax.Array]) -> jax.Array:
    """Mean return of the episodes that finished in each iteration (NaN where none finished)."""
    count = metrics["episode_count"]
    return jnp.where(count > 0, metrics["episode_return_sum"] / jnp.maximum(count, 1), jnp.nan)


# ----------------------------------------------------------------------------------------------
# The shared loop
# ----------------------------------------------------------------------------------------------


def make_offpolicy_train(
    config: OffPolicyConfig,
    spec: EnvSpec,
    agent: Agent,
    *,
    num_reports: int = 20,
    axis_name: str | None = None,
) -> Trainer:
    """Builds the pure training functions of an off-policy algorithm.

    Args:
      config: the run's (validated) configuration.
      spec: its environment's description.
      agent: the algorithm's networks and update (`acjax.agents.offpolicy.sac.make_agent`, ...).
      num_reports: how many chunks the host loop should see (see `acjax.agents.onpolicy.loop.make_train`).
      axis_name: must be None: an agent's environments and replay buffer are not split over
        devices (raises `ValueError` otherwise).
    """
    if axis_name is not None:
        raise ValueError(DATA_PARALLEL_ERROR.format(algo=config.algo.upper()))
    env, env_params = make_env(config.env)
    buffer = make_replay_buffer(config.buffer_size)
    updates_per_chunk = chunk_size(config.num_updates, num_reports)
    num_envs, num_steps, dim = config.num_envs, config.num_steps, spec.num_actions
    step_vmap = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def hp_or_default(hparams):
        return config.hyperparams() if hparams is None else hparams

    def init(key: chex.PRNGKey, hparams=None) -> TrainState:
        hparams = hp_or_default(hparams)
        key, net_key, env_key = jax.random.split(key, 3)
        obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(
            jax.random.split(env_key, num_envs), env_params
        )
        obs = obs.astype(jnp.float32)
        action = jnp.zeros((dim,), jnp.float32)
        params, opt_state = agent.init(net_key, obs[0], action, hparams)
        example = Transition(obs[0], action, jnp.float32(0.0), jnp.bool_(False), obs[0])
        acting = ActingState(env_state, obs, jnp.zeros((num_envs, dim), jnp.float32))
        return TrainState(params, opt_state, acting, buffer.init(example), key, jnp.int32(0),
                          jnp.int32(0))

    def env_step(params, hparams, acting: ActingState, inputs):
        key, steps_before = inputs
        act_key, random_key, env_key = jax.random.split(key, 3)
        policy_action, noise = agent.explore(params, acting.obs, acting.noise, act_key, hparams)
        random_action = jax.random.uniform(random_key, (num_envs, dim), jnp.float32, -1.0, 1.0)
        action = jnp.where(steps_before < config.learning_starts, random_action, policy_action)
        next_obs, env_state, reward, terminated, truncated, info = step_vmap(
            jax.random.split(env_key, num_envs), acting.env_state, rescale_actions(action, spec),
            env_params,
        )
        done = jnp.logical_or(terminated, truncated)
        item = Transition(
            acting.obs, action, reward.astype(jnp.float32), terminated,
            info["final_observation"].astype(jnp.float32),
        )
        stats = (
            jnp.sum(jnp.where(done, info["episode_return"], 0.0)),
            jnp.sum(jnp.where(done, info["episode_length"], 0)).astype(jnp.float32),
            jnp.sum(done).astype(jnp.float32),
        )
        noise = jnp.where(done[:, None], 0.0, noise)
        return ActingState(env_state, next_obs.astype(jnp.float32), noise), (item, stats)

    def learn_all(replay, hparams, key, operand):
        def step(carry, index):
            params, opt_state, count, key = carry
            key, sample_key, learn_key = jax.random.split(key, 3)
            batch = buffer.sample(replay, sample_key, config.batch_size)
            params, opt_state, metrics = agent.learn(
                params, opt_state, batch, learn_key, count, index, hparams
            )
            return (params, opt_state, count + 1, key), metrics

        params, opt_state, count = operand
        (params, opt_state, count, _), metrics = jax.lax.scan(
            step, (params, opt_state, count, key),
            jnp.arange(config.gradient_steps, dtype=jnp.int32),
        )
        return (params, opt_state, count), _reduce_metrics(metrics, agent.delayed_metrics)

    def update(state: TrainState, hparams=None):
        hparams = hp_or_default(hparams)
        key, collect_key, learn_key = jax.random.split(state.key, 3)
        start = state.update_step * config.steps_per_iteration
        steps_before = start + num_envs * jnp.arange(num_steps, dtype=jnp.int32)
        acting, (items, stats) = jax.lax.scan(
            lambda c, x: env_step(state.params, hparams, c, x),
            state.env, (jax.random.split(collect_key, num_steps), steps_before),
        )
        items = jax.tree.map(lambda x: x.reshape((num_steps * num_envs,) + x.shape[2:]), items)
        replay = buffer.add(state.replay, items)
        learning = start + config.steps_per_iteration >= config.learning_starts
        (params, opt_state, count), metrics = cond_update(
            learning,
            lambda operand: learn_all(replay, hparams, learn_key, operand),
            (state.params, state.opt_state, state.gradient_step),
        )
        return_sum, length_sum, episodes = (jnp.sum(x) for x in stats)
        metrics.update(
            episode_return_sum=return_sum,
            episode_length_sum=length_sum,
            episode_count=episodes,
            buffer_size=replay.size.astype(jnp.float32),
        )
        new_state = TrainState(params, opt_state, acting, replay, key, state.update_step + 1,
                               count)
        return new_state, metrics

    def run_updates(state, hparams, length):
        return jax.lax.scan(lambda s, _: update(s, hparams), state, None, length=length)

    def train_chunk(state: TrainState, hparams=None):
        return run_updates(state, hp_or_default(hparams), updates_per_chunk)

    def train(key: chex.PRNGKey, hparams=None):
        hparams = hp_or_default(hparams)
        return run_updates(init(key, hparams), hparams, config.num_updates)

    def act(state: TrainState, obs, key, deterministic: bool = True):
        obs = jnp.asarray(obs, jnp.float32)
        if deterministic:
            action = agent.greedy(state.params, obs)
        else:
            action = agent.sample(state.params, obs, key, config.hyperparams())
        return rescale_actions(action, spec)

    def evaluate(state: TrainState, key: chex.PRNGKey, num_episodes: int = 10):
        return evaluate_policy(
            lambda obs, k: act(state, obs, k, True), env, env_params, key,
            num_episodes=num_episodes, max_steps=spec.max_episode_steps,
        )

    return Trainer(
        config, spec, agent.networks, init, update, train_chunk, train, evaluate, act,
        updates_per_chunk,
    )


def _reduce_metrics(metrics: dict[str, jax.Array], delayed: tuple[str, ...]):
    """Per-step metrics `[G]` to one value per iteration (delayed ones: over their steps)."""
    out = {}
    updates = metrics.get("actor_updates")
    for name, values in metrics.items():
        if name == "actor_updates":
            out[name] = jnp.sum(values)
        elif name in delayed and updates is not None:
            out[name] = jnp.sum(values * updates) / jnp.maximum(jnp.sum(updates), 1.0)
        else:
            out[name] = jnp.mean(values)
    return out

