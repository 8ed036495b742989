"""Asynchronous actor-learner: IMPALA (V-trace) and A3C, on gymnax or gymnasium environments.

    python -m acjax.impala --env CartPole-v1 [--mode a3c] [--help]
    python -m acjax.impala --env gymnasium:CartPole-v1 [--async-envs]

The public face of `acjax.agents.impala` (configuration, learner, actors, runtime) and its
presets; the command line is `acjax.run.actor_learner`'s.
"""

from __future__ import annotations

from acjax.agents.impala.config import ImpalaConfig, LearnerState, Policy, Trajectory
from acjax.agents.impala.learner import Learner, impala_loss, make_learner, make_optimizer
from acjax.agents.impala.presets import impala_preset
from acjax.agents.impala.runtime import ActorError, ActorLearner, GradientItem

__all__ = ["ActorError", "ActorLearner", "GradientItem", "ImpalaConfig", "Learner",
           "LearnerState", "Policy", "Trajectory", "impala_loss", "impala_preset", "main", "make_learner",
           "make_optimizer"]


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point: `python -m acjax.impala --env CartPole-v1`."""
    from acjax.run.actor_learner import run_main

    return run_main(argv)


if __name__ == "__main__":
    from acjax.run.cli import entry

    entry(main)
