"""The learner's loop: take what the actors sent, update, publish; greedy evaluation.

`make_step(config, learner)` returns the learner's step over an `ActorLearner`:

* IMPALA: take `batch_size` trajectories, move them to the learner's device, one jitted
  `learner.update` (V-trace corrects their lag), publish the new parameters;
* A3C: take one actor's gradient, one jitted `learner.apply_gradients`, publish.

Each step returns its metrics (device arrays, read by the host only when it reports) and the
policy lag of what it consumed: the learner's version minus the version that produced each
item. `make_evaluate` runs the greedy policy on fresh environments (jitted on the learner's
device for gymnax, on the host for gymnasium).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from acjax.agents.common import evaluate_policy
from acjax.agents.impala.config import ImpalaConfig, LearnerState
from acjax.agents.impala.learner import Learner
from acjax.agents.impala.runtime import ActorLearner
from acjax.envs import EnvSpec, make_env
from acjax.envs.gymnasium import evaluate_host

__all__ = ["StepResult", "initial_state", "make_evaluate", "make_step", "to_host_metrics"]


class StepResult(NamedTuple):
    """One learner step: the new state, its metrics (device scalars), the consumed items'
    policy lags (versions behind) and the env steps they hold."""

    state: LearnerState
    metrics: dict[str, Any]
    lags: list[int]
    env_steps: int


def make_step(config: ImpalaConfig, learner: Learner, learner_device) -> Callable[..., StepResult]:
    """`step(actor_learner, state) -> StepResult`, the learner's step for `config.mode`."""
    # No donation: the published parameters may share the learner's buffers (one device).
    update = jax.jit(learner.update)
    apply_gradients = jax.jit(learner.apply_gradients)

    def step(al: ActorLearner, state: LearnerState, version: int) -> StepResult:
        if config.mode == "impala":
            items = al.next_items(config.batch_size)
            trajs = jax.device_put(tuple(items), learner_device)
            state, metrics = update(state, trajs)
        else:
            (item,) = al.next_items(1)
            grads, obs = jax.device_put((item.grads, item.obs), learner_device)
            state, applied = apply_gradients(state, grads, obs)
            metrics = {**item.metrics, **applied}
            items = [item]
        al.publish(state.policy, version + 1)
        lags = [version - int(item.version) for item in items]
        return StepResult(state, metrics, lags, config.trajectory_steps * len(items))

    return step


def make_evaluate(config: ImpalaConfig, learner: Learner, spec: EnvSpec):
    """`evaluate(policy, seed, num_episodes) -> (returns[E], lengths[E])` (numpy), the greedy
    policy's first episode on each of E fresh environments (`policy`: a `Policy`)."""
    if config.on_host:
        greedy = jax.jit(learner.greedy)

        def evaluate_on_host(policy, seed: int, num_episodes: int):
            def act(obs):
                return np.asarray(greedy(policy, obs))

            return evaluate_host(config.env, act, num_episodes, seed=seed)

        return evaluate_on_host
    env, env_params = make_env(config.env)
    max_steps = spec.max_episode_steps or 10_000

    def run(policy, key, num_episodes):
        def act(obs, key):
            del key
            return learner.greedy(policy, obs)

        return evaluate_policy(act, env, env_params, key, num_episodes=num_episodes,
                               max_steps=max_steps)

    run = jax.jit(run, static_argnums=(2,))

    def evaluate_gymnax(policy, seed: int, num_episodes: int):
        returns, lengths = run(policy, jax.random.key(seed), num_episodes)
        return np.asarray(returns), np.asarray(lengths)

    return evaluate_gymnax


def to_host_metrics(metrics: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """A list of steps' metrics as `{name: float64[n]}` (one device read for all)."""
    if not metrics:
        return {}
    fetched = jax.device_get(metrics)
    return {name: np.asarray([float(np.asarray(m[name])) for m in fetched])
            for name in fetched[0]}


def initial_state(learner: Learner, config: ImpalaConfig, device) -> LearnerState:
    """The learner's state at version 0, committed to `device` (as every later state is, so
    the update compiles once)."""
    with jax.default_device(device):
        state = jax.jit(learner.init)(jax.random.key(config.seed))
    return jax.device_put(state, device)

