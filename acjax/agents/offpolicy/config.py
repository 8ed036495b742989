"""The fields SAC, TD3 and DDPG share (`OffPolicyConfig`) and their checks."""

from __future__ import annotations

import dataclasses

from acjax.core.config import check_positive, check_unit_interval, flag, traced
from acjax.envs import EnvSpec, check_env_name, env_spec, make_env
from acjax.networks import OffPolicyNetworkConfig

__all__ = ["DATA_PARALLEL_ERROR", "OffPolicyConfig", "check_continuous_actions"]


@dataclasses.dataclass(frozen=True)
class OffPolicyConfig:
    """The fields SAC, TD3 and DDPG share (`acjax.agents.offpolicy.sac.SACConfig`, `.td3.TD3Config`).

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
        (one device, or several agents per device); the command line calls this before compiling.
        """
        if layout.data_shards > 1:
            raise ValueError(DATA_PARALLEL_ERROR.format(algo=self.algo.upper() or "off-policy"))


DATA_PARALLEL_ERROR = (
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
