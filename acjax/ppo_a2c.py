"""On-policy actor-critic: PPO and A2C on gymnax environments.

One update is a pure function: roll out `num_envs` environments for `num_steps` steps, compute
advantages (GAE(lambda) or n-step returns, termination and truncation kept apart), then run
`update_epochs` x `num_minibatches` optimizer steps (PPO's clipped surrogate), or one step on the
whole batch (A2C). `make_train(config)` returns the pure functions; `train(key)` is the whole run
as one jittable function, and `train_chunk` runs a fixed number of updates so a host loop can
report between chunks. Run it from the shell with

    python -m acjax.ppo_a2c --env CartPole-v1 [--algo a2c] [--help]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from acjax import losses, parallel, returns
from acjax.backend import data_parallel_devices, hidden_products
from acjax.config import (
    check_nonnegative,
    check_positive,
    check_unit_interval,
    flag,
    traced,
    traced_fields,
)
from acjax.envs import (
    EnvSpec,
    check_env_name,
    env_spec,
    make_env,
    normalize,
    reward_scale_init,
    running_mean_std_init,
)
from acjax.networks import ActorCritic, NetworkConfig, make_actor_critic
from acjax.rollout import EnvCarry, Transition, reset_envs, rollout
from acjax.training import chunk_size, evaluate_policy, gradient_update, permutation

Algo = Literal["ppo", "a2c"]


@dataclasses.dataclass(frozen=True)
class PPOA2CConfig:
    """Everything that defines an on-policy run.

    Fields built with `traced(...)` are hyperparameters that enter the computation as values
    (you may batch them with `vmap` for sweeps); the others are static: they fix shapes or
    program structure, and changing them means a new compile.
    """

    env: str = "CartPole-v1"
    """Any gymnax environment id, e.g. CartPole-v1, Pendulum-v1, Breakout-MinAtar."""
    algo: Algo = "ppo"
    """ppo: clipped surrogate, epochs of minibatch SGD; a2c: one step per rollout."""
    seed: int = 0
    """Seed of the run's PRNG key."""
    total_timesteps: int = 500_000
    """Environment steps to train for (rounded down to whole updates)."""
    num_envs: int = 4
    """Environments stepped in parallel (vmapped)."""
    num_steps: int = 128
    """Rollout length per environment and update."""
    update_epochs: int = 4
    """Passes over each rollout (PPO); must be 1 for A2C."""
    num_minibatches: int = 4
    """Minibatches per epoch; must divide num_steps (each minibatch takes num_steps /
    num_minibatches random steps of every environment); 1 for A2C."""
    learning_rate: float = traced(2.5e-4)
    """Optimizer step size (traced: sweepable)."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over training."""
    gamma: float = traced(0.99)
    """Discount factor in [0, 1]."""
    gae_lambda: float = traced(0.95)
    """GAE lambda in [0, 1] (1: Monte-Carlo with bootstrap, 0: one-step TD)."""
    advantage: Literal["gae", "nstep"] = "gae"
    """Advantage estimator: GAE(lambda) or bootstrapped n-step returns."""
    n_step: int = 5
    """n of the n-step estimator (advantage=nstep)."""
    clip_eps: float = traced(0.2)
    """PPO's probability-ratio clip range."""
    clip_value: bool = False
    """Clip the value update around the rollout's values (PPO)."""
    value_clip_eps: float = traced(0.2)
    """Clip range of the value update when clip_value is on."""
    ent_coef: float = traced(0.01)
    """Weight of the entropy bonus."""
    vf_coef: float = traced(0.5)
    """Weight of the value loss."""
    max_grad_norm: float = traced(0.5)
    """Clip gradients to this global norm."""
    normalize_advantages: bool = True
    """Standardise advantages per minibatch."""
    normalize_observations: bool = False
    """Normalise observations by running mean and std (kept in the state)."""
    scale_rewards: bool = False
    """Divide rewards by the running std of the discounted return."""
    optimizer: Literal["adam", "rmsprop"] = "adam"
    """Optimizer (A2C's classic choice is rmsprop)."""
    optimizer_eps: float = 1e-5
    """Epsilon of Adam / RMSprop."""
    network: NetworkConfig = NetworkConfig()  # noqa: RUF009 (frozen, hence safe to share)
    """Actor-critic architecture."""

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.batch_size

    def hyperparams(self) -> Hyperparams:
        """The traced fields as float32 scalars (`vmap` a stack of these for a sweep)."""
        return Hyperparams(
            **{name: jnp.float32(getattr(self, name)) for name in Hyperparams._fields}
        )

    def validate(self, spec: EnvSpec | None = None) -> EnvSpec:
        """Checks every field; raises `ValueError` naming the field, its value and the fix.

        Builds the environment (cheap, nothing is compiled) to check action-space-specific
        options, and returns its `EnvSpec`.
        """
        check_env_name(self.env)
        if self.algo not in ("ppo", "a2c"):
            raise ValueError(f"algo={self.algo!r} is not one of 'ppo', 'a2c'")
        if self.advantage not in ("gae", "nstep"):
            raise ValueError(f"advantage={self.advantage!r} is not one of 'gae', 'nstep'")
        if self.optimizer not in ("adam", "rmsprop"):
            raise ValueError(f"optimizer={self.optimizer!r} is not one of 'adam', 'rmsprop'")
        for name in ("total_timesteps", "num_envs", "num_steps", "update_epochs",
                     "num_minibatches"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"{name}={value!r} must be a positive integer; pass e.g. "
                    f"{flag(name)} {getattr(PPOA2CConfig(), name)}"
                )
        check_positive("learning_rate", self.learning_rate, "typical values are 1e-4 to 1e-3")
        check_unit_interval("gamma", self.gamma)
        check_unit_interval("gae_lambda", self.gae_lambda)
        check_nonnegative("ent_coef", self.ent_coef)
        check_nonnegative("vf_coef", self.vf_coef)
        check_positive("max_grad_norm", self.max_grad_norm, "e.g. --max-grad-norm 0.5")
        check_positive("optimizer_eps", self.optimizer_eps, "e.g. --optimizer-eps 1e-5")
        if spec is None:
            env, env_params = make_env(self.env)
            spec = env_spec(env, env_params, self.env)
        self.network.validate(spec)
        if self.algo == "ppo" and self.clip_eps <= 0:
            raise ValueError(
                f"clip_eps={self.clip_eps} must be positive for PPO; typical values are 0.1-0.3"
            )
        if self.clip_value and self.value_clip_eps <= 0:
            raise ValueError(
                f"value_clip_eps={self.value_clip_eps} must be positive when clip_value=True; "
                "use e.g. --value-clip-eps 0.2 or drop --clip-value"
            )
        if self.algo == "a2c" and (self.update_epochs != 1 or self.num_minibatches != 1):
            raise ValueError(
                f"algo='a2c' takes one gradient step per rollout on the whole batch, but "
                f"update_epochs={self.update_epochs} and num_minibatches={self.num_minibatches}; "
                "set --update-epochs 1 --num-minibatches 1 (or use --algo ppo)"
            )
        if self.algo == "a2c" and self.clip_value:
            raise ValueError(
                "clip_value=True is a PPO option; algo='a2c' has no old values to clip against; "
                "drop --clip-value"
            )
        if self.num_steps % self.num_minibatches:
            raise ValueError(
                f"num_minibatches={self.num_minibatches} does not divide num_steps="
                f"{self.num_steps}; each minibatch takes num_steps / num_minibatches random "
                "steps of every environment (so results do not depend on how environments are "
                "split over devices); choose a divisor of num_steps"
            )
        if self.advantage == "nstep" and self.n_step < 1:
            raise ValueError(f"n_step={self.n_step} must be >= 1 for advantage='nstep'")
        if self.num_updates < 1:
            raise ValueError(
                f"total_timesteps={self.total_timesteps} is smaller than one batch "
                f"(num_envs * num_steps = {self.batch_size}); raise --total-timesteps"
            )
        return spec


class Hyperparams(NamedTuple):
    """The traced hyperparameters of `PPOA2CConfig`, each a `[]` float32 (or batched) array."""

    learning_rate: jax.Array
    gamma: jax.Array
    gae_lambda: jax.Array
    clip_eps: jax.Array
    value_clip_eps: jax.Array
    ent_coef: jax.Array
    vf_coef: jax.Array
    max_grad_norm: jax.Array


if set(traced_fields(PPOA2CConfig)) != set(Hyperparams._fields):  # pragma: no cover
    raise TypeError("PPOA2CConfig's traced fields and Hyperparams disagree")


class TrainState(NamedTuple):
    """The whole state of an on-policy run, one pytree.

    Attributes:
      params: actor-critic parameters.
      opt_state: optax state (its step count drives learning-rate annealing).
      env: environment states, current observations, normaliser statistics.
      key: PRNG key (raw `uint32[2]`).
      update_step: `[]` int32, updates done so far.
    """

    params: Any
    opt_state: optax.OptState
    env: EnvCarry
    key: jax.Array
    update_step: jax.Array


class Batch(NamedTuple):
    """A rollout ready for SGD, every field `[T, B, ...]` (a minibatch: `[T / M * B, ...]`)."""

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    advantage: jax.Array
    target: jax.Array


class Trainer(NamedTuple):
    """Pure functions of one configuration.

    Attributes:
      config: the configuration they were built from.
      spec: the environment's static description.
      network: the actor-critic's pure functions.
      init: `(key, hparams=None) -> TrainState`.
      update: `(state, hparams=None) -> (state, metrics)`, one rollout and its SGD.
      train_chunk: `(state, hparams=None) -> (state, metrics[updates_per_chunk])`.
      train: `(key, hparams=None) -> (state, metrics[num_updates])`, the whole run.
      evaluate: `(state, key, num_episodes) -> (returns[E], lengths[E])`, greedy policy.
      act: `(state, obs, key, deterministic) -> action`, the policy as the env sees it.
      updates_per_chunk: static chunk length.
    """

    config: PPOA2CConfig
    spec: EnvSpec
    network: ActorCritic
    init: Callable[..., TrainState]
    update: Callable[..., tuple[TrainState, dict[str, jax.Array]]]
    train_chunk: Callable[..., tuple[TrainState, dict[str, jax.Array]]]
    train: Callable[..., tuple[TrainState, dict[str, jax.Array]]]
    evaluate: Callable[..., tuple[jax.Array, jax.Array]]
    act: Callable[..., jax.Array]
    updates_per_chunk: int


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
    """Advantages and value targets `[T, B]` from a rollout."""
    if config.advantage == "gae":
        return returns.gae(
            traj.reward,
            traj.value,
            traj.next_value,
            traj.terminated,
            traj.truncated,
            hparams.gamma,
            hparams.gae_lambda,
        )
    targets = returns.n_step_returns(
        traj.reward, traj.next_value, traj.terminated, traj.truncated, hparams.gamma,
        config.n_step,
    )
    return targets - traj.value, targets


def make_loss(
    config: PPOA2CConfig,
    network: ActorCritic,
    axis_name: str | None = None,
    *,
    advantages_normalized: bool = False,
):
    """`loss(params, batch, hparams) -> (loss, metrics)` for the configured algorithm.

    With `axis_name`, the minibatch is one shard of a global minibatch and advantages are
    standardised with the global mean and standard deviation. With `advantages_normalized`,
    the caller has standardised each minibatch's advantages already (`make_train` does so for
    all minibatches of an epoch at once) and the loss takes them as they are.
    """

    def loss(params, batch: Batch, hparams: Hyperparams):
        dist, value = network.policy_and_value(params, batch.obs)
        log_prob = dist.log_prob(batch.action)
        entropy = dist.entropy()
        adv = batch.advantage
        if config.normalize_advantages and not advantages_normalized:
            adv = losses.normalize_advantages(adv, axis_name=axis_name)
        if config.algo == "a2c":
            return losses.a2c_loss(
                log_prob, adv, value, batch.target, entropy,
                value_coef=hparams.vf_coef, entropy_coef=hparams.ent_coef,
            )
        return losses.ppo_loss(
            log_prob, batch.log_prob, adv, value, batch.value, batch.target, entropy,
            clip_eps=hparams.clip_eps,
            value_coef=hparams.vf_coef,
            entropy_coef=hparams.ent_coef,
            value_clip_eps=hparams.value_clip_eps if config.clip_value else None,
        )

    return loss


def make_train(
    config: PPOA2CConfig, *, num_reports: int = 20, axis_name: str | None = None
) -> Trainer:
    """Builds the pure training functions of `config` (validated here, before any tracing).

    Args:
      config: the run's configuration.
      num_reports: how many chunks the host loop should see; `train_chunk` runs
        `updates_per_chunk` updates, a divisor of `num_updates` close to
        `num_updates / num_reports`.
      axis_name: a mapped axis the environments are split along (data parallelism, see
        `acjax.parallel`): each shard steps `num_envs / shards` of them, gradients and
        statistics are averaged over the axis, and the result does not depend on the number of
        shards (up to float rounding).
    """
    spec = config.validate()
    env, env_params = make_env(config.env)
    network = make_actor_critic(spec, config.network)
    loss_fn = make_loss(config, network, axis_name, advantages_normalized=True)
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
        return TrainState(params, opt_state, carry, key, jnp.int32(0))

    def update(state: TrainState, hparams: Hyperparams | None = None):
        hparams = hp_or_default(hparams)
        optimizer = make_optimizer(config, hparams)
        key, rollout_key, sgd_key = jax.random.split(state.key, 3)
        carry, traj = rollout(
            network, state.params, env, env_params, state.env, rollout_key,
            num_steps=config.num_steps,
            gamma=hparams.gamma,
            normalize_observations=config.normalize_observations,
            scale_rewards=config.scale_rewards,
            axis_name=axis_name,
        )
        advantages, targets = compute_advantages(config, hparams, traj)
        batch = Batch(traj.obs, traj.action, traj.log_prob, traj.value, advantages, targets)

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
                    lambda a: losses.normalize_advantages(a, axis_name=axis_name)
                )(minibatches.advantage))
            return jax.lax.scan(sgd_step, opt, minibatches)

        orders = None
        if m > 1:
            # Each environment's steps in its own random order per epoch (keys follow the
            # global env index); minibatch j then holds T / M steps of every environment. All
            # epochs' orders are drawn up front in one vectorised sort.
            def env_orders(epoch_key):
                keys = parallel.shard_keys(epoch_key, config.num_envs, axis_name)
                return jax.vmap(lambda k: permutation(k, t))(keys).T  # [T, B]

            orders = jax.vmap(env_orders)(jax.random.split(sgd_key, config.update_epochs))
        (params, opt_state), sgd_metrics = jax.lax.scan(
            epoch, (state.params, state.opt_state), orders, length=config.update_epochs
        )
        done = jnp.logical_or(traj.terminated, traj.truncated)
        metrics = dict(zip(metric_names, jnp.mean(sgd_metrics, axis=(0, 1)), strict=True))
        metrics.update(
            parallel.total(
                {
                    "episode_return_sum": jnp.sum(jnp.where(done, traj.episode_return, 0.0)),
                    "episode_length_sum": jnp.sum(
                        jnp.where(done, traj.episode_length, 0)
                    ).astype(jnp.float32),
                    "episode_count": jnp.sum(done).astype(jnp.float32),
                },
                axis_name,
            ),
            **parallel.mean(
                {"advantage_mean": jnp.mean(advantages), "value_mean": jnp.mean(traj.value)},
                axis_name,
            ),
        )
        new_state = TrainState(params, opt_state, carry, key, state.update_step + 1)
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


def episode_returns(metrics: dict[str, jax.Array]) -> jax.Array:
    """Mean return of the episodes that finished in each update (NaN where none finished)."""
    count = metrics["episode_count"]
    return jnp.where(count > 0, metrics["episode_return_sum"] / jnp.maximum(count, 1), jnp.nan)


def _peek_sgd_step(argv: list[str], saved: PPOA2CConfig | None):
    """The flags (over the preset's values, or a resumed run's saved configuration) that size
    an SGD step, read before JAX starts; None when they cannot be read."""
    from acjax import cli, presets

    base = saved
    if base is None:
        env, algo = cli._preparse(argv, PPOA2CConfig)
        algo = algo or "ppo"
        fields = {**presets._ALGO_DEFAULTS.get(algo, {}), **presets._PRESETS.get((env, algo), {})}
        base = dataclasses.replace(PPOA2CConfig(), **fields)
    return cli.peek_config_flags(
        argv, base, "num_envs", "num_steps", "num_minibatches", "network.hidden_sizes",
        "network.critic_hidden_sizes",
    )


def sgd_step_flops(argv: list[str], saved: PPOA2CConfig | None = None) -> int | None:
    """Rough matmul FLOPs of one SGD step of the run `argv` describes, before JAX starts.

    Read from the flags over the preset's values (or a resumed run's saved configuration)
    without building the environment: `6 * samples * sum of hidden-layer products` for the
    actor and the critic (forward and backward; input and output layers left out, since the
    observation size is not known yet). None when the flags cannot be read.
    """
    known = _peek_sgd_step(argv, saved)
    return None if known is None else _step_flops_of(known)


def _samples_of(known) -> int:
    return known.num_envs * known.num_steps // max(known.num_minibatches, 1)


def _step_flops_of(known) -> int:
    return step_flops(_samples_of(known), known.hidden_sizes, known.critic_hidden_sizes)


def lone_agent_devices(argv: list[str], saved: PPOA2CConfig | None = None) -> int:
    """CPU devices the command line splits a single agent's environments over, before JAX
    starts: `acjax.backend.data_parallel_devices` of the run's SGD step (1 for small steps or
    unreadable flags)."""
    known = _peek_sgd_step(argv, saved)
    if known is None:
        return 1
    return data_parallel_devices(_samples_of(known), known.num_envs)


def step_flops(samples: int, hidden_sizes, critic_hidden_sizes=()) -> int:
    """`6 * samples * sum of hidden-layer products` of actor and critic: the matmul FLOPs of one
    forward and backward pass without the input and output layers (see `sgd_step_flops`)."""
    actor = list(hidden_sizes)
    critic = list(critic_hidden_sizes) or actor
    return 6 * samples * max(hidden_products(actor) + hidden_products(critic), 1)


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point: `python -m acjax.ppo_a2c --env CartPole-v1`."""
    from acjax import cli
    from acjax.presets import ppo_a2c_preset

    return cli.run_main(
        description=__doc__.split("\n\n")[0],
        config_cls=PPOA2CConfig,
        preset=ppo_a2c_preset,
        make_train=make_train,
        argv=argv,
        step_flops=sgd_step_flops,
        lone_agent_devices=lone_agent_devices,
    )


if __name__ == "__main__":
    # Run through the importable module so its classes are the ones the presets build.
    from acjax.cli import entry
    from acjax.ppo_a2c import main as _main

    entry(_main)
