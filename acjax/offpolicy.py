"""Off-policy actor-critic: what SAC, TD3 and DDPG share.

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
with an `Agent` (`acjax.sac`, `acjax.td3`), and `make_offpolicy_train` builds the same
`Trainer` interface as `acjax.ppo_a2c`, so seeds, sweeps, devices, the command line,
checkpoints and `load_policy` (`acjax.cli`, `acjax.parallel`, `acjax.checkpoint`) work
unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from acjax import losses
from acjax.backend import hidden_products
from acjax.config import check_positive, check_unit_interval, flag, traced
from acjax.envs import EnvSpec, check_env_name, env_spec, make_env
from acjax.networks import OffPolicyNetworkConfig
from acjax.replay import ReplayState, make_replay_buffer
from acjax.training import chunk_size, evaluate_policy, gradient_update

__all__ = [
    "ActingState",
    "Agent",
    "OffPolicyConfig",
    "TrainState",
    "Trainer",
    "Transition",
    "check_continuous_actions",
    "cond_update",
    "critic_update",
    "episode_returns",
    "make_offpolicy_train",
    "make_optimizer",
    "make_sgd_step_flops",
    "rescale_actions",
]


@dataclasses.dataclass(frozen=True)
class OffPolicyConfig:
    """The fields SAC, TD3 and DDPG share (`acjax.sac.SACConfig`, `acjax.td3.TD3Config`).

    Fields built with `traced(...)` (in the subclasses) are hyperparameters that enter the
    computation as values and may be swept; the others are static: they fix shapes or program
    structure.
    """

    env: str = "Pendulum-v1"
    """Any gymnax environment with a continuous (Box) action space."""
    algo: str = ""
    """The algorithm (set by each subclass)."""
    seed: int = 0
    """Seed of the run's PRNG key."""
    total_timesteps: int = 1_000_000
    """Environment steps to train for (rounded down to whole iterations)."""
    num_envs: int = 1
    """Environments stepped in parallel (vmapped)."""
    num_steps: int = 1
    """Steps of every environment per iteration (an iteration collects num_envs * num_steps
    transitions, then takes gradient_steps updates)."""
    gradient_steps: int = 1
    """Gradient updates per iteration (update-to-data ratio: gradient_steps / (num_envs *
    num_steps))."""
    learning_starts: int = 5_000
    """Uniformly random actions and no updates before this many env steps."""
    buffer_size: int = 1_000_000
    """Replay buffer capacity in transitions (the oldest are overwritten first)."""
    batch_size: int = 256
    """Transitions per sampled minibatch."""
    gamma: float = traced(0.99)
    """Discount factor in [0, 1]."""
    tau: float = traced(0.005)
    """Polyak step size of the target networks, in (0, 1] (1: copy the online networks)."""
    actor_lr: float = traced(3e-4)
    """Adam step size of the actor."""
    critic_lr: float = traced(3e-4)
    """Adam step size of the critics."""
    max_grad_norm: float | None = None
    """Clip every network's gradient to this global norm (None: no clipping)."""
    network: OffPolicyNetworkConfig = OffPolicyNetworkConfig()  # noqa: RUF009 (frozen)
    """Actor and critic architecture."""

    @property
    def steps_per_iteration(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        """Iterations of the run (the command line's "updates")."""
        return self.total_timesteps // self.steps_per_iteration

    def validate_common(self, spec: EnvSpec | None = None) -> EnvSpec:
        """Checks the shared fields; raises `ValueError` naming the field, its value and the fix.

        Builds the environment (cheap, nothing is compiled) and returns its `EnvSpec`.
        """
        check_env_name(self.env)
        if spec is None:
            env, env_params = make_env(self.env)
            spec = env_spec(env, env_params, self.env)
        check_continuous_actions(spec)
        defaults = type(self)()
        for name in ("total_timesteps", "num_envs", "num_steps", "gradient_steps",
                     "buffer_size", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(
                    f"{name}={value!r} must be a positive integer; pass e.g. "
                    f"{flag(name)} {getattr(defaults, name)}"
                )
        if not isinstance(self.learning_starts, int) or self.learning_starts < 0:
            raise ValueError(
                f"learning_starts={self.learning_starts!r} must be an integer >= 0; pass e.g. "
                "--learning-starts 1000"
            )
        check_unit_interval("gamma", self.gamma)
        if not (isinstance(self.tau, (int, float)) and 0.0 < self.tau <= 1.0):
            raise ValueError(
                f"tau={self.tau!r} must lie in (0, 1] (the target networks' step size; 1 copies "
                "the online networks); pass e.g. --tau 0.005"
            )
        check_positive("actor_lr", self.actor_lr, "typical values are 1e-4 to 1e-3")
        check_positive("critic_lr", self.critic_lr, "typical values are 1e-4 to 1e-3")
        if self.max_grad_norm is not None:
            check_positive("max_grad_norm", self.max_grad_norm,
                           "pass e.g. --max-grad-norm 10, or leave it out for no clipping")
        self.network.validate()
        if self.batch_size > self.buffer_size:
            raise ValueError(
                f"batch_size={self.batch_size} is larger than buffer_size={self.buffer_size}; "
                f"raise --buffer-size to at least {self.batch_size} or lower --batch-size"
            )
        if self.buffer_size < self.steps_per_iteration:
            raise ValueError(
                f"buffer_size={self.buffer_size} cannot hold one iteration's transitions "
                f"(num_envs * num_steps = {self.steps_per_iteration}); raise --buffer-size to "
                f"at least {self.steps_per_iteration}"
            )
        if self.num_updates < 1:
            raise ValueError(
                f"total_timesteps={self.total_timesteps} is smaller than one iteration "
                f"(num_envs * num_steps = {self.steps_per_iteration}); raise --total-timesteps"
            )
        if self.learning_starts >= self.num_updates * self.steps_per_iteration:
            raise ValueError(
                f"learning_starts={self.learning_starts} leaves no env step of the "
                f"{self.num_updates * self.steps_per_iteration} to learn from; lower "
                "--learning-starts or raise --total-timesteps"
            )
        return spec

    def check_layout(self, layout) -> None:
        """Refuses a device layout that splits an agent's environments over devices.

        Each agent keeps its whole replay buffer on one device, so agents are laid out whole
        (one device, or several agents per device); `acjax.cli` calls this before compiling.
        """
        if layout.data_shards > 1:
            raise ValueError(_DATA_PARALLEL_ERROR.format(algo=self.algo.upper() or "off-policy"))


_DATA_PARALLEL_ERROR = (
    "{algo} keeps each agent's replay buffer on one device and cannot split an agent's "
    "environments over devices (device_split='envs'); use --device-split agents with a number "
    "of seeds x sweep settings that --num-devices divides, or --num-devices 1"
)


def check_continuous_actions(spec: EnvSpec) -> None:
    """Raises `ValueError` unless the environment has a continuous (Box) action space."""
    if spec.discrete:
        raise ValueError(
            f"SAC/TD3/DDPG need a continuous (Box) action space; {spec.name} has "
            f"{spec.describe_action_space()}; choose an environment such as Pendulum-v1 or "
            "MountainCarContinuous-v0, or train it with python -m acjax.ppo_a2c"
        )


def make_sgd_step_flops(config_cls: type):
    """`(argv, saved=None) -> int | None`: rough matmul FLOPs of one gradient step, before JAX
    starts (`acjax.cli.run_main`'s `step_flops`; small steps run on one execution thread).

    Read from the flags over the preset (or a resumed run's saved configuration) without
    building anything: `6 * batch_size * (A + 2 K C)`, with A and C the sums of the actor's
    and one critic's hidden-layer products and K the number of critics (the actor runs forward
    and backward about once per step, each critic about twice: on the batch and through the
    policy's actions). None when the flags cannot be read.
    """

    def sgd_step_flops(argv: list[str], saved: Any = None) -> int | None:
        from acjax import cli, presets

        base = saved
        if base is None:  # the preset's fields, read without importing gymnax (it starts JAX)
            env, algo = cli._preparse(argv, config_cls)
            algo = algo or config_cls.algo
            if algo not in presets._OFFPOLICY_DEFAULTS:
                return None
            base = dataclasses.replace(config_cls(), algo=algo, **presets._offpolicy_fields(
                env, algo, check=False))
        known = cli.peek_config_flags(
            argv, base, "algo", "batch_size", "network.hidden_sizes", "network.critic_hidden_sizes"
        )
        if known is None:
            return None
        actor = known.hidden_sizes
        critic = known.critic_hidden_sizes or actor
        critics = 1 if known.algo == "ddpg" else 2
        return 6 * known.batch_size * max(
            hidden_products(actor) + 2 * critics * hidden_products(critic), 1
        )

    return sgd_step_flops


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


class Trainer(NamedTuple):
    """Pure functions of one configuration (the fields of `acjax.ppo_a2c.Trainer`).

    Attributes:
      config: the configuration they were built from.
      spec: the environment's static description.
      network: the algorithm's network functions (actor and critics).
      init: `(key, hparams=None) -> TrainState`.
      update: `(state, hparams=None) -> (state, metrics)`, one iteration (collect, store,
        `gradient_steps` updates).
      train_chunk: `(state, hparams=None) -> (state, metrics[updates_per_chunk])`.
      train: `(key, hparams=None) -> (state, metrics[num_updates])`, the whole run.
      evaluate: `(state, key, num_episodes) -> (returns[E], lengths[E])`, greedy policy.
      act: `(state, obs, key, deterministic) -> action`, in the environment's bounds.
      updates_per_chunk: static chunk length (iterations).
    """

    config: Any
    spec: EnvSpec
    network: Any
    init: Callable[..., TrainState]
    update: Callable[..., tuple[TrainState, dict[str, jax.Array]]]
    train_chunk: Callable[..., tuple[TrainState, dict[str, jax.Array]]]
    train: Callable[..., tuple[TrainState, dict[str, jax.Array]]]
    evaluate: Callable[..., tuple[jax.Array, jax.Array]]
    act: Callable[..., jax.Array]
    updates_per_chunk: int


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
        return losses.critic_loss(critic.apply(critic_params, batch.obs, batch.action), target)

    params, opt_state, metrics = gradient_update(loss, optimizer, params, opt_state)
    names = ("critic_loss", "q_mean", "target_mean", "td_error_abs")
    return params, opt_state, {**{n: metrics[n] for n in names},
                               "critic_grad_norm": metrics["grad_norm"]}


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
      agent: the algorithm's networks and update (`acjax.sac.make_agent`, ...).
      num_reports: how many chunks the host loop should see (see `acjax.ppo_a2c.make_train`).
      axis_name: must be None: an agent's environments and replay buffer are not split over
        devices (raises `ValueError` otherwise).
    """
    if axis_name is not None:
        raise ValueError(_DATA_PARALLEL_ERROR.format(algo=config.algo.upper()))
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

