"""The on-policy loop every on-policy agent shares: rollout, advantages, epochs of SGD.

One update is a pure function: roll out `num_envs` environments for `num_steps` steps, compute
advantages (GAE(lambda) or n-step returns, termination and truncation kept apart), then run
`update_epochs` x `num_minibatches` optimizer steps on the agent's loss. `make_train(config,
agent)` returns the pure functions (`acjax.agents.base.Trainer`); `train(key)` is the whole run
as one jittable function, and `train_chunk` runs a fixed number of updates so a host loop can
report between chunks.

An agent (`OnPolicyAgent`) supplies what differs: its loss on a minibatch, its checks of the
configuration, and optionally its own advantage estimator (with state of its own carried from
update to update), its own networks and its own critic evaluation. PPO
(`acjax.agents.onpolicy.ppo`), A2C (`.a2c`), REINFORCE (`.reinforce`) and the one-step
actor-critic (`.ac`) are such agents.

With `config.whole_episodes`, every update resets the environments and rolls each out to the
end of its first episode; `Batch.weight` masks the steps after it out of the loss, the
advantage statistics and the episode counts (episodes of different lengths share one batch
without padding entering the gradient). With `config.termination_reward`, the rollout's
environment replaces the reward of terminating steps (`acjax.envs.shaping.TerminationReward`);
evaluation and the reported returns use the environment's own rewards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from acjax.agents.base import Trainer
from acjax.agents.common import chunk_size, evaluate_policy, gradient_update, permutation
from acjax.agents.onpolicy.config import Batch, Hyperparams, PPOA2CConfig, TrainState
from acjax.agents.rollout import EnvCarry, Transition, reset_envs, rollout
from acjax.core import collectives, returns
from acjax.core.losses import normalize_advantages
from acjax.envs import EnvSpec, make_env, normalize, reward_scale_init, running_mean_std_init
from acjax.envs.shaping import TerminationReward
from acjax.networks import ActorCritic, Dense, make_actor_critic
from acjax.networks import dense as plain_dense

__all__ = [
    "OnPolicyAgent",
    "UpdateInputs",
    "compute_advantages",
    "episode_mask",
    "episode_returns",
    "make_loss",
    "make_optimizer",
    "make_train",
]

TRAINER_METRICS = {
    "pg_loss": "policy_loss",
    "clip_loss": "policy_loss",
    "clip_approx_kl": "approx_kl",
    "clip_ratio_mean": "ratio_mean",
    "value_explained_variance": "explained_variance",
    "entropy_mean": "entropy",
    "a2c_loss": "total_loss",
    "ppo_loss": "total_loss",
}
"""The trainer's names (metrics.csv's columns) for the losses' metrics where they differ: the
columns stay those of every earlier run; the others keep the losses' names
(docs/library-contract.md)."""

LossTerms = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]
"""`(config, hparams, batch, *, log_prob, entropy, value, advantage) -> (loss, metrics)`."""


class UpdateInputs(NamedTuple):
    """What an agent's advantage estimator may read besides the rollout.

    Attributes:
      network: the agent's network functions.
      params: the parameters the rollout was collected with.
      key: a PRNG key of this update (for estimators that sample, e.g. a SARSA next action).
      agent_state: the agent's state carried from the previous update.
      weight: `[T, B]` float32 step mask of a whole-episode rollout, or None.
      axis_name: the mapped axis the environments are split along (None: not split); batch
        statistics must be reduced over it.
    """

    network: object
    params: object
    key: jax.Array
    agent_state: object
    weight: jax.Array | None
    axis_name: str | None = None


class OnPolicyAgent(NamedTuple):
    """What an on-policy algorithm adds to the shared loop.

    Attributes:
      name: the algorithm's name (`PPOA2CConfig.algo`).
      loss: `(config, hparams, batch: Batch, *, log_prob, entropy, value, advantage) ->
        (loss, metrics)`: the loss of one minibatch, given the current policy's
        `log_prob[N]` of the batch's actions, its `entropy[N]`, the critic's current
        `value[N]` (`critic`'s) and the (standardised, when `config.normalize_advantages`)
        `advantage[N]`; `batch.weight` (None or `[N]`) weights the samples.
      validate: `(config) -> None`; raises `ValueError` naming the field, its value and the
        fix for settings the agent cannot use.
      advantages: `(config, hparams, traj: Transition[T, B], inputs: UpdateInputs) ->
        (advantages[T, B], targets[T, B], agent_state)`; None: `compute_advantages` (GAE,
        n-step or Monte-Carlo returns per `config`), state unchanged.
      init_state: `(config) -> agent_state`, the agent's own state (default `()`).
      make_network: `(spec, config, dense) -> network`; None: `make_actor_critic(spec,
        config.network, dense=dense)`. The network has at least `init`, `policy`, `value`.
      critic: `(config, network, params, batch) -> (dist, value)`, the current policy and the
        critic's output the loss regresses; None: `network.policy_and_value(params, obs)`.
      needs_next_obs: the rollout keeps the true successor observations (`Transition.next_obs`).
    """

    name: str
    loss: LossTerms
    validate: Callable[[PPOA2CConfig], None] = lambda config: None
    advantages: Callable[..., tuple[jax.Array, jax.Array, object]] | None = None
    init_state: Callable[[PPOA2CConfig], object] = lambda config: ()
    make_network: Callable[[EnvSpec, PPOA2CConfig, Dense], object] | None = None
    critic: Callable[..., tuple[object, jax.Array]] | None = None
    needs_next_obs: bool = False


def make_optimizer(
    config: PPOA2CConfig, hparams: Hyperparams
) -> optax.GradientTransformation:
    """Global-norm clipping then Adam / RMSprop, with optional linear learning-rate decay."""
    total_steps = config.num_updates * config.update_epochs * config.num_minibatches
    if config.anneal_lr:
        def learning_rate(count):
            frac = 1.0 - jnp.minimum(count, total_steps).astype(jnp.float32) / total_steps
            return hparams.learning_rate * frac
    else:
        learning_rate = hparams.learning_rate
    if config.optimizer == "adam":
        base = optax.adam(learning_rate, eps=config.optimizer_eps)
    else:
        base = optax.rmsprop(learning_rate, decay=0.99, eps=config.optimizer_eps)
    # One flat parameter vector: a handful of large ops instead of a few per leaf.
    return optax.flatten(optax.chain(optax.clip_by_global_norm(hparams.max_grad_norm), base))


def compute_advantages(
    config: PPOA2CConfig, hparams: Hyperparams, traj: Transition
) -> tuple[jax.Array, jax.Array]:
    """Advantages and value targets `[T, B]` from a rollout (GAE, n-step or Monte-Carlo)."""
    if config.advantage == "mc":
        targets = returns.discounted_returns(
            traj.reward, traj.next_value, traj.terminated, traj.truncated, gamma=hparams.gamma
        )
        return targets - traj.value, targets
    if config.advantage == "gae":
        return returns.gae(
            traj.reward, traj.value, traj.next_value, traj.terminated, traj.truncated,
            gamma=hparams.gamma, gae_lambda=hparams.gae_lambda,
        )
    targets = returns.n_step_returns(
        traj.reward, traj.next_value, traj.terminated, traj.truncated,
        gamma=hparams.gamma, n=config.n_step,
    )
    return targets - traj.value, targets


def make_loss(
    config: PPOA2CConfig,
    agent: OnPolicyAgent,
    network: ActorCritic,
    axis_name: str | None = None,
    *,
    advantages_normalized: bool = False,
):
    """`loss(params, batch, hparams) -> (loss, metrics)`: the agent's loss on the network's
    current policy and values.

    With `axis_name`, the minibatch is one shard of a global minibatch and advantages are
    standardised with the global mean and standard deviation. With `advantages_normalized`,
    the caller has standardised each minibatch's advantages already (`make_train` does so for
    all minibatches of an epoch at once) and the loss takes them as they are.
    """

    def loss(params, batch: Batch, hparams: Hyperparams):
        if agent.critic is None:
            dist, value = network.policy_and_value(params, batch.obs)
        else:
            dist, value = agent.critic(config, network, params, batch)
        log_prob = dist.log_prob(batch.action)
        entropy = dist.entropy()
        adv = batch.advantage
        if config.normalize_advantages and not advantages_normalized:
            adv = normalize_advantages(adv, weights=batch.weight, axis_name=axis_name)
        loss_value, metrics = agent.loss(config, hparams, batch, log_prob=log_prob,
                                         entropy=entropy, value=value, advantage=adv)
        return loss_value, {TRAINER_METRICS.get(k, k): v for k, v in metrics.items()}

    return loss


def make_train(
    config: PPOA2CConfig,
    agent: OnPolicyAgent,
    *,
    num_reports: int = 20,
    axis_name: str | None = None,
    dense: Dense | None = None,
) -> Trainer:
    """Builds the pure training functions of `config` (validated here, before any tracing).

    Args:
      config: the run's configuration.
      agent: the on-policy algorithm (`acjax.agents.onpolicy.ppo.AGENT`, `.a2c.AGENT`, ...):
        its loss (and checks) in the shared loop.
      num_reports: how many chunks the host loop should see; `train_chunk` runs
        `updates_per_chunk` updates, a divisor of `num_updates` close to
        `num_updates / num_reports`.
      axis_name: a mapped axis the environments are split along (data parallelism, see
        `acjax.run.parallel`): each shard steps `num_envs / shards` of them, gradients and
        statistics are averaged over the axis, and the result does not depend on the number of
        shards (up to float rounding).
      dense: the networks' dense layer (default `acjax.networks.layers.dense`; the command
        lines pass `acjax.cpu.dense.dense` on CPU).
    """
    spec = config.validate()
    agent.validate(config)
    env, env_params = make_env(config.env)
    train_env = env
    if config.termination_reward is not None:
        train_env = TerminationReward(env, config.termination_reward)
    if agent.make_network is None:
        network = make_actor_critic(spec, config.network, dense=dense or plain_dense)
    else:
        network = agent.make_network(spec, config, dense or plain_dense)
    loss_fn = make_loss(config, agent, network, axis_name, advantages_normalized=True)
    updates_per_chunk = chunk_size(config.num_updates, num_reports)
    t, m = config.num_steps, config.num_minibatches

    def hp_or_default(hparams):
        return config.hyperparams() if hparams is None else hparams

    def prepare_obs(carry: EnvCarry, obs):
        if config.normalize_observations:
            return normalize(carry.obs_stats, obs)
        return obs.astype(jnp.float32)

    def init(key: chex.PRNGKey, hparams: Hyperparams | None = None) -> TrainState:
        hparams = hp_or_default(hparams)
        key, net_key, env_key = jax.random.split(key, 3)
        obs, env_state = reset_envs(env, env_params, env_key, config.num_envs, axis_name)
        params = network.init(net_key, obs[0].astype(jnp.float32))
        opt_state = make_optimizer(config, hparams).init(params)
        carry = EnvCarry(
            env_state,
            obs,
            running_mean_std_init(spec.obs_shape),
            reward_scale_init(obs.shape[0]),
        )
        return TrainState(params, opt_state, carry, key, jnp.int32(0), agent.init_state(config))

    def update(state: TrainState, hparams: Hyperparams | None = None):
        hparams = hp_or_default(hparams)
        optimizer = make_optimizer(config, hparams)
        key, rollout_key, sgd_key = jax.random.split(state.key, 3)
        env_carry = state.env
        if config.whole_episodes:
            # Fresh episodes every update; the reset and the estimator's keys come from the
            # rollout's, so the state's key is split as in every other update.
            rollout_key, reset_key, adv_key = jax.random.split(rollout_key, 3)
            obs, env_state = reset_envs(train_env, env_params, reset_key, config.num_envs,
                                        axis_name)
            env_carry = env_carry._replace(env_state=env_state, obs=obs)
        else:
            adv_key = jax.random.fold_in(rollout_key, 1)
        carry, traj = rollout(
            network, state.params, train_env, env_params, env_carry, rollout_key,
            num_steps=config.num_steps,
            gamma=hparams.gamma,
            normalize_observations=config.normalize_observations,
            scale_rewards=config.scale_rewards,
            axis_name=axis_name,
            keep_next_obs=agent.needs_next_obs,
        )
        weight = episode_mask(traj.terminated, traj.truncated) if config.whole_episodes else None
        if agent.advantages is None:
            advantages, targets = compute_advantages(config, hparams, traj)
            agent_state = state.agent_state
        else:
            inputs = UpdateInputs(network, state.params, adv_key, state.agent_state, weight,
                                  axis_name)
            advantages, targets, agent_state = agent.advantages(config, hparams, traj, inputs)
        batch = Batch(traj.obs, traj.action, traj.log_prob, traj.value, advantages, targets,
                      weight)

        metric_names: list[str] = []

        def sgd_step(opt, minibatch):
            params, opt_state = opt
            params, opt_state, metrics = gradient_update(
                loss_fn, optimizer, params, opt_state, minibatch, hparams, axis_name=axis_name
            )
            # One stacked vector per step: the scan then stores one array, not one per metric.
            metric_names[:] = list(metrics)
            packed = jnp.stack([metrics[k].astype(jnp.float32) for k in metric_names])
            return (params, opt_state), packed

        def epoch(opt, order):
            shuffled = batch
            if order is not None:

                def gather(x):
                    index = order.reshape(order.shape + (1,) * (x.ndim - 2))
                    return jnp.take_along_axis(x, index, axis=0)

                shuffled = jax.tree.map(gather, batch)
            minibatches = jax.tree.map(
                lambda x: x.reshape((m, t // m * x.shape[1]) + x.shape[2:]), shuffled
            )
            if config.normalize_advantages:
                # Every minibatch standardised by its own (global) statistics, as the loss
                # would do, for the whole epoch at once: with the data split over devices,
                # that is one exchange of statistics per epoch, not two inside every step.
                minibatches = minibatches._replace(advantage=jax.vmap(
                    lambda a, w: normalize_advantages(a, weights=w, axis_name=axis_name),
                    in_axes=(0, None if minibatches.weight is None else 0),
                )(minibatches.advantage, minibatches.weight))
            return jax.lax.scan(sgd_step, opt, minibatches)

        orders = None
        if m > 1:
            # Each environment's steps in its own random order per epoch (keys follow the
            # global env index); minibatch j then holds T / M steps of every environment. All
            # epochs' orders are drawn up front in one vectorised sort.
            def env_orders(epoch_key):
                keys = collectives.shard_keys(epoch_key, config.num_envs, axis_name)
                return jax.vmap(lambda k: permutation(k, t))(keys).T  # [T, B]

            orders = jax.vmap(env_orders)(jax.random.split(sgd_key, config.update_epochs))
        (params, opt_state), sgd_metrics = jax.lax.scan(
            epoch, (state.params, state.opt_state), orders, length=config.update_epochs
        )
        done = jnp.logical_or(traj.terminated, traj.truncated)
        if weight is not None:
            done = jnp.logical_and(done, weight > 0)
        metrics = dict(zip(metric_names, jnp.mean(sgd_metrics, axis=(0, 1)), strict=True))
        metrics.update(
            collectives.total(
                {
                    "episode_return_sum": jnp.sum(jnp.where(done, traj.episode_return, 0.0)),
                    "episode_length_sum": jnp.sum(
                        jnp.where(done, traj.episode_length, 0)
                    ).astype(jnp.float32),
                    "episode_count": jnp.sum(done).astype(jnp.float32),
                },
                axis_name,
            ),
            **collectives.mean(
                {"advantage_mean": _mean(advantages, weight), "value_mean": _mean(traj.value,
                                                                                 weight)},
                axis_name,
            ),
        )
        new_state = TrainState(params, opt_state, carry, key, state.update_step + 1, agent_state)
        return new_state, metrics

    def run_updates(state, hparams, length):
        return jax.lax.scan(lambda s, _: update(s, hparams), state, None, length=length)

    def train_chunk(state: TrainState, hparams: Hyperparams | None = None):
        return run_updates(state, hp_or_default(hparams), updates_per_chunk)

    def train(key: chex.PRNGKey, hparams: Hyperparams | None = None):
        hparams = hp_or_default(hparams)
        return run_updates(init(key, hparams), hparams, config.num_updates)

    def act(state: TrainState, obs, key, deterministic: bool = True):
        dist = network.policy(state.params, prepare_obs(state.env, obs))
        return dist.mode() if deterministic else dist.sample(key)

    def evaluate(state: TrainState, key: chex.PRNGKey, num_episodes: int = 10):
        return evaluate_policy(
            lambda obs, k: act(state, obs, k, True), env, env_params, key,
            num_episodes=num_episodes, max_steps=spec.max_episode_steps,
        )

    return Trainer(
        config, spec, network, init, update, train_chunk, train, evaluate, act, updates_per_chunk
    )


def _mean(x: jax.Array, weight: jax.Array | None) -> jax.Array:
    if weight is None:
        return jnp.mean(x)
    return jnp.sum(x * weight) / jnp.maximum(jnp.sum(weight), 1.0)


def episode_mask(terminated: jax.Array, truncated: jax.Array) -> jax.Array:
    """`[T, B]` float32: 1 up to and including the step where each environment's first episode
    of the rollout ends, 0 after it (the steps of the next episode, which a whole-episode
    rollout does not finish)."""
    done = jnp.logical_or(terminated, truncated).astype(jnp.int32)
    ended_before = jnp.cumsum(done, axis=0) - done
    return (ended_before == 0).astype(jnp.float32)


def episode_returns(metrics: dict[str, jax.Array]) -> jax.Array:
    """Mean return of the episodes that finished in each update (NaN where none finished)."""
    count = metrics["episode_count"]
    return jnp.where(count > 0, metrics["episode_return_sum"] / jnp.maximum(count, 1), jnp.nan)
