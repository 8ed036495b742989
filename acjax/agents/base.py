"""The one `Trainer` every algorithm family builds: pure functions of one configuration.

A family's `make_train(config, ...)` (`acjax.agents.onpolicy.loop`,
`acjax.agents.offpolicy.loop`) returns a `Trainer`; everything above the agents (seeds, sweeps,
devices, the command lines, checkpoints, `load_policy`: `acjax.run`) drives any family through
it and never looks inside its state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from acjax.envs import EnvSpec

__all__ = ["Trainer"]


class Trainer(NamedTuple):
    """Pure functions of one configuration.

    Attributes:
      config: the configuration they were built from.
      spec: the environment's static description.
      network: the algorithm's network functions.
      init: `(key, hparams=None) -> state`, the whole training state as one pytree.
      update: `(state, hparams=None) -> (state, metrics)`, one update (on-policy: a rollout and
        its SGD; off-policy: one iteration of collecting and `gradient_steps` updates).
      train_chunk: `(state, hparams=None) -> (state, metrics[updates_per_chunk])`.
      train: `(key, hparams=None) -> (state, metrics[num_updates])`, the whole run.
      evaluate: `(state, key, num_episodes) -> (returns[E], lengths[E])`, greedy policy.
      act: `(state, obs, key, deterministic) -> action`, the policy as the env sees it.
      updates_per_chunk: static chunk length.
      report: `(state, key) -> {name: scalar}`, further evaluation the command line adds to
        `summary.json` after training (AlphaZero's matches), or None.

    `metrics` always hold `episode_return_sum`, `episode_length_sum` and `episode_count` (the
    episodes that ended in each update), which the host loop reports.
    """

    config: Any
    spec: EnvSpec
    network: Any
    init: Callable[..., Any]
    update: Callable[..., tuple[Any, dict[str, jax.Array]]]
    train_chunk: Callable[..., tuple[Any, dict[str, jax.Array]]]
    train: Callable[..., tuple[Any, dict[str, jax.Array]]]
    evaluate: Callable[..., tuple[jax.Array, jax.Array]]
    act: Callable[..., jax.Array]
    updates_per_chunk: int
    report: Callable[..., dict[str, jax.Array]] | None = None
