"""On-policy actor-critics on gymnax environments: PPO, A2C, REINFORCE and the one-step
actor-critic.

One update is a pure function: roll out `num_envs` environments for `num_steps` steps (or, with
`whole_episodes`, each to the end of an episode), compute advantages (GAE(lambda), n-step or
Monte-Carlo returns, termination and truncation kept apart), then run `update_epochs` x
`num_minibatches` optimizer steps (PPO's clipped surrogate), or one step on the whole batch
(A2C, REINFORCE, the one-step actor-critic after every env step). `make_train(config)` returns the pure functions; `train(key)` is the whole run
as one jittable function, and `train_chunk` runs a fixed number of updates so a host loop can
report between chunks. Run it from the shell with

    python -m acjax.ppo_a2c --env CartPole-v1 [--algo {ppo,a2c,reinforce,ac}] [--help]

The public face of `acjax.agents.onpolicy` (the loop, the configuration, the agents); the
command line is `acjax.run.cli`'s.
"""

from __future__ import annotations

from acjax.agents.base import Trainer
from acjax.agents.onpolicy.config import Batch, Hyperparams, PPOA2CConfig, TrainState
from acjax.agents.onpolicy.loop import (
    OnPolicyAgent,
    compute_advantages,
    episode_returns,
    make_loss,
    make_optimizer,
)
from acjax.agents.onpolicy.presets import ppo_a2c_preset
from acjax.networks import Dense

__all__ = [
    "Batch",
    "Hyperparams",
    "OnPolicyAgent",
    "PPOA2CConfig",
    "TrainState",
    "Trainer",
    "compute_advantages",
    "episode_returns",
    "main",
    "make_loss",
    "make_optimizer",
    "make_train",
    "ppo_a2c_preset",
]


def make_train(
    config: PPOA2CConfig,
    *,
    num_reports: int = 20,
    axis_name: str | None = None,
    dense: Dense | None = None,
) -> Trainer:
    """Builds the pure training functions of `config` with the agent its `algo` names (`ppo`,
    `a2c`, or any on-policy agent of `acjax.run.registry`); see
    `acjax.agents.onpolicy.loop.make_train` for the arguments."""
    from acjax.run.registry import algorithm

    return algorithm(config.algo, "acjax.ppo_a2c").make_train(
        config, num_reports=num_reports, axis_name=axis_name, dense=dense
    )


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point: `python -m acjax.ppo_a2c --env CartPole-v1`."""
    from acjax.run.cli import run_main

    return run_main("acjax.ppo_a2c", argv)


if __name__ == "__main__":
    from acjax.run.cli import entry

    entry(main)
