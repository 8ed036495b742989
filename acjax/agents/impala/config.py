"""The configuration of an actor-learner run, the learner's state and the actors' trajectories.

`ImpalaConfig` describes both schemes of `python -m acjax.impala`: IMPALA (`mode="impala"`:
actors send trajectories, the learner corrects their policy lag with V-trace) and A3C
(`mode="a3c"`: actors send gradients computed with the parameters they last saw; the learner
applies them as they arrive). Every field is static: the actor-learner trains one agent per
process, so nothing is `vmap`ped over hyperparameters.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal, NamedTuple

import jax
import optax

from acjax.core.config import check_nonnegative, check_positive, check_unit_interval, flag
from acjax.envs import EnvSpec, RunningMeanStd, check_env_name, env_spec, make_env
from acjax.envs.gymnasium import check_gymnasium_name, host_env_spec, is_gymnasium_name
from acjax.networks import NetworkConfig

__all__ = ["ImpalaConfig", "LearnerState", "Policy", "Trajectory"]


@dataclasses.dataclass(frozen=True)
class ImpalaConfig:
    """Everything that defines an actor-learner run (all fields static)."""

    env: str = "CartPole-v1"
    """A gymnax id (CartPole-v1, Pendulum-v1, ...; stepped by jitted unrolls on an actor
    device) or gymnasium:ID for any gymnasium environment stepped on the host
    (gymnasium:CartPole-v1, gymnasium:Pendulum-v1, ...; needs pip install 'acjax[gymnasium]')."""
    algo: str = "impala"
    """The family's name (fixed: the scheme is --mode)."""
    mode: Literal["impala", "a3c"] = "impala"
    """impala: actors send trajectories, the learner applies V-trace to their policy lag;
    a3c: actors compute gradients on their own trajectories with the parameters they last saw
    and send those; the learner applies them as they arrive (no importance correction)."""
    seed: int = 0
    """Seed of the run (network initialisation, actors' actions and environments)."""
    total_timesteps: int = 2_000_000
    """Environment steps to train for (rounded down to whole updates)."""
    num_actors: int = 2
    """K actor threads, each stepping its own batch of environments."""
    num_envs: int = 16
    """Environments per actor (B)."""
    num_steps: int = 20
    """Unroll length T: steps per environment in one trajectory."""
    batch_size: int = 2
    """Trajectories per learner update (impala); a3c applies one gradient per trajectory and
    needs 1."""
    queue_size: int = 4
    """Capacity of the queue between actors and learner (trajectories or gradients); a full
    queue makes the actors wait."""
    max_policy_lag: int | None = None
    """Bound the staleness: an actor starts a trajectory only when its parameters are at most
    this many versions behind the learner's next one (0: acting and learning take turns, a
    synchronous run; default: no bound)."""
    learning_rate: float = 7e-4
    """Optimizer step size."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over the run's updates."""
    optimizer: Literal["rmsprop", "adam"] = "rmsprop"
    """The learner's optimizer (IMPALA's and A3C's choice: rmsprop)."""
    optimizer_eps: float = 1e-5
    """Epsilon of RMSprop / Adam."""
    rmsprop_decay: float = 0.99
    """RMSprop's decay of the squared-gradient average."""
    max_grad_norm: float = 0.5
    """Clip every gradient to this global norm before the optimizer."""
    gamma: float = 0.99
    """Discount factor in [0, 1]."""
    vtrace_lambda: float = 1.0
    """V-trace's lambda in [0, 1] (the c_t = lambda min(1, rho_t) traces)."""
    clip_rho_threshold: float = 1.0
    """rho-bar: truncation of the importance weights in V-trace's targets."""
    clip_pg_rho_threshold: float = 1.0
    """rho-bar of the policy-gradient advantages."""
    vf_coef: float = 0.5
    """Weight of the value loss."""
    ent_coef: float = 0.01
    """Weight of the entropy bonus."""
    normalize_observations: bool = False
    """Normalise observations by a running mean and std that the learner keeps from the
    observations it consumes and publishes with the parameters; actors normalise with the
    statistics of the version they act with (V-trace counts the difference as policy lag)."""
    reward_scale: float = 1.0
    """Multiply rewards by this before the loss (e.g. 0.1 on Pendulum); reported returns stay
    the environment's own."""
    async_envs: bool = False
    """gymnasium only: step each actor's environments in worker processes (AsyncVectorEnv)
    instead of in the actor thread (SyncVectorEnv)."""
    timeout: float = 60.0
    """Seconds the learner waits for the next trajectory, and an AsyncVectorEnv for its
    workers, before the run stops with an error (a dead or hung worker never hangs a run)."""
    network: NetworkConfig = NetworkConfig()  # noqa: RUF009 (frozen, hence safe to share)
    """Actor-critic architecture."""

    @property
    def on_host(self) -> bool:
        """Whether the environments are gymnasium's, stepped on the host."""
        return is_gymnasium_name(self.env)

    @property
    def trajectory_steps(self) -> int:
        """Env steps in one trajectory: num_envs * num_steps."""
        return self.num_envs * self.num_steps

    @property
    def steps_per_update(self) -> int:
        """Env steps each learner update consumes."""
        return self.trajectory_steps * (self.batch_size if self.mode == "impala" else 1)

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.steps_per_update

    def spec(self) -> EnvSpec:
        """The environment's static description (builds it; nothing is compiled)."""
        if self.on_host:
            return host_env_spec(self.env)
        env, env_params = make_env(self.env)
        return env_spec(env, env_params, self.env)

    def validate(self) -> EnvSpec:
        """Raises `ValueError` naming the field, its value and the fix; returns the `EnvSpec`."""
        if self.on_host:
            check_gymnasium_name(self.env)
        else:
            check_env_name(self.env)
        if self.mode not in ("impala", "a3c"):
            raise ValueError(f"mode={self.mode!r} is not one of 'impala', 'a3c'; pass e.g. "
                             "--mode impala")
        if self.algo != "impala":
            raise ValueError(f"algo={self.algo!r}: python -m acjax.impala trains 'impala' (the "
                             "scheme is --mode impala or --mode a3c); drop --algo")
        if self.optimizer not in ("adam", "rmsprop"):
            raise ValueError(f"optimizer={self.optimizer!r} is not one of 'adam', 'rmsprop'; "
                             "pass e.g. --optimizer rmsprop")
        for name in ("total_timesteps", "num_actors", "num_envs", "num_steps", "batch_size",
                     "queue_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer; pass e.g. "
                                 f"{flag(name)} {getattr(ImpalaConfig(), name)}")
        if self.max_policy_lag is not None and self.max_policy_lag < 0:
            raise ValueError(f"max_policy_lag={self.max_policy_lag} must be >= 0 (0: synchronous) "
                             "or left out (no bound)")
        if self.mode == "a3c" and self.batch_size != 1:
            raise ValueError(f"batch_size={self.batch_size}: mode='a3c' applies each actor's "
                             "gradient as it arrives, one trajectory at a time; pass "
                             "--batch-size 1 (or use --mode impala)")
        if self.batch_size > self.queue_size:
            raise ValueError(f"batch_size={self.batch_size} exceeds queue_size={self.queue_size}; "
                             f"the queue must hold a whole batch: pass --queue-size "
                             f"{self.batch_size} or more")
        if self.async_envs and not self.on_host:
            raise ValueError(f"async_envs=True steps gymnasium environments in worker processes, "
                             f"but env={self.env!r} is a gymnax environment stepped on the actor "
                             "device; drop --async-envs or use --env gymnasium:ID")
        check_positive("learning_rate", self.learning_rate, "typical values are 1e-4 to 1e-3")
        check_positive("optimizer_eps", self.optimizer_eps, "e.g. --optimizer-eps 1e-5")
        check_unit_interval("rmsprop_decay", self.rmsprop_decay)
        check_positive("max_grad_norm", self.max_grad_norm, "e.g. --max-grad-norm 0.5")
        check_unit_interval("gamma", self.gamma)
        check_unit_interval("vtrace_lambda", self.vtrace_lambda)
        check_positive("clip_rho_threshold", self.clip_rho_threshold, "e.g. "
                       "--clip-rho-threshold 1.0")
        check_positive("clip_pg_rho_threshold", self.clip_pg_rho_threshold, "e.g. "
                       "--clip-pg-rho-threshold 1.0")
        check_nonnegative("vf_coef", self.vf_coef)
        check_nonnegative("ent_coef", self.ent_coef)
        check_positive("reward_scale", self.reward_scale, "e.g. --reward-scale 0.1")
        check_positive("timeout", self.timeout, "e.g. --timeout 60")
        if not math.isfinite(self.timeout):
            raise ValueError(f"timeout={self.timeout} must be finite; pass e.g. --timeout 60")
        if self.num_updates < 1:
            raise ValueError(
                f"total_timesteps={self.total_timesteps} is smaller than one update "
                f"({self.steps_per_update} env steps: num_envs * num_steps"
                f"{' * batch_size' if self.mode == 'impala' else ''}); raise --total-timesteps")
        spec = self.spec()
        if self.network.architecture != "mlp":
            raise ValueError(f"network.architecture={self.network.architecture!r}: the "
                             "actor-learner builds MLP actor-critics; pass "
                             "--network.architecture mlp")
        self.network.validate(spec)
        return spec


class Trajectory(NamedTuple):
    """One actor's unroll, time-major: fields `[T, B, ...]` unless noted (B: its envs).

    Attributes:
      obs: `[T, B, *obs_shape]` float32, the observations acted on.
      action: `[T, B]` int32 or `[T, B, action_dim]` float32 (the unclipped sample).
      behaviour_log_prob: `[T, B]` log mu(a_t|s_t) under the parameters that acted.
      reward: `[T, B]` float32, the environment's reward.
      terminated: `[T, B]` bool.
      truncated: `[T, B]` bool.
      next_obs: `[T, B, *obs_shape]` the true successors s'_t (the final observation where an
        episode ended at t).
      episode_return: `[T, B]` float32, return of the episode ending at t (valid where done).
      episode_length: `[T, B]` int32, its length (valid where done).
      version: `[]` int32, the parameter version that produced it (learner updates done).
      actor: `[]` int32, the actor's index.
      index: `[]` int32, the trajectory's number within its actor (0, 1, 2, ...).
    """

    obs: Any
    action: Any
    behaviour_log_prob: Any
    reward: Any
    terminated: Any
    truncated: Any
    next_obs: Any
    episode_return: Any
    episode_length: Any
    version: Any
    actor: Any
    index: Any


class Policy(NamedTuple):
    """What the learner publishes to the actors: the parameters and the observation
    statistics they act with (unchanged unless `normalize_observations`)."""

    params: Any
    obs_stats: RunningMeanStd


class LearnerState(NamedTuple):
    """The learner's whole state, one pytree (what checkpoints hold).

    Attributes:
      params: actor-critic parameters.
      opt_state: optax state (its count drives learning-rate annealing).
      version: `[]` int32, updates applied (the version of `params`).
      key: `uint32[2]` raw PRNG key for the actors' keys (each actor folds in its index and
        the version it starts from).
      obs_stats: running observation statistics (`normalize_observations`).
    """

    params: Any
    opt_state: optax.OptState
    version: jax.Array
    key: jax.Array
    obs_stats: RunningMeanStd

    @property
    def policy(self) -> Policy:
        return Policy(self.params, self.obs_stats)
