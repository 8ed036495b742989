"""Per-environment presets of `python -m acjax.impala`.

`impala_preset(env)` returns the configuration the command line starts from; every field can
still be overridden by a flag. A gymnasium id (`gymnasium:CartPole-v1`) gets the preset of the
gymnax environment of the same name where there is one: the same task, stepped on the host.
Presets are plain data (nothing is imported or started in JAX).
"""

from __future__ import annotations

import dataclasses

from acjax.agents.impala.config import ImpalaConfig
from acjax.networks import NetworkConfig

__all__ = ["PRESETS", "impala_preset"]

PRESETS: dict[str, dict] = {
    "CartPole-v1": dict(
        total_timesteps=2_000_000, num_actors=2, num_envs=16, num_steps=16, batch_size=1,
        learning_rate=1e-3, optimizer="rmsprop", ent_coef=0.01, max_grad_norm=0.5,
    ),
    # Swing-up needs many small, fresh updates: observations normalised, lambda 0.8, and the
    # lag bounded to 0 (one actor; acting and learning take turns). With 2 actors and a lag of
    # about 6 the same settings stayed near -1100 after 3M steps (seed 0, gymnax).
    "Pendulum-v1": dict(
        total_timesteps=2_000_000, num_actors=1, num_envs=16, num_steps=16, batch_size=1,
        max_policy_lag=0, learning_rate=3e-3, optimizer="adam", ent_coef=0.0,
        max_grad_norm=0.5, gamma=0.95, vtrace_lambda=0.8, reward_scale=0.1,
        normalize_observations=True, network=NetworkConfig(hidden_sizes=(64, 64)),
    ),
}
"""Tuned fields per environment (gymnax id; gymnasium ids share them)."""


def impala_preset(env: str, algo: str | None = None, name: str | None = None) -> ImpalaConfig:
    """The configuration `python -m acjax.impala --env ENV` starts from.

    Raises:
      ValueError: `name` given (the actor-learner has no named presets) or `algo` other than
        "impala".
    """
    if name is not None:
        raise ValueError(f"preset={name!r}: python -m acjax.impala has no named presets; drop "
                         "--preset")
    if algo not in (None, "impala"):
        raise ValueError(f"algo={algo!r}: python -m acjax.impala trains 'impala' (the scheme is "
                         "--mode impala or --mode a3c); drop --algo")
    base = env.removeprefix("gymnasium:")
    return dataclasses.replace(ImpalaConfig(), env=env, **PRESETS.get(base, {}))
