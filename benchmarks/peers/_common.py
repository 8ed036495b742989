"""Pieces every child runner of `benchmarks/peers.py` shares.

Nothing here imports JAX, torch or a framework at module level: a child imports this module
before its library stack, and the parent never imports it. The JAX helpers import JAX inside
the function.

A child reports one JSON object on one stdout line that starts with `RESULT_PREFIX`; anything
else it (or its libraries) prints is ignored by the parent.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time

RESULT_PREFIX = "PEERS-RESULT "


def emit(result: dict) -> None:
    """Prints the child's result line (the only line the parent reads); NaN and infinity
    become null."""
    print(RESULT_PREFIX + json.dumps(_plain(result), allow_nan=False), flush=True)


def _plain(x):
    """`x` with numpy / JAX scalars and arrays as Python values, non-finite floats as None."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):  # numpy / JAX values
        return _plain(x.tolist())
    if isinstance(x, float):
        return finite(x)
    return x


def finite(x) -> float | None:
    """A float, or None for NaN / infinity (JSON has neither)."""
    x = float(x)
    return x if math.isfinite(x) else None


def since(t0: float) -> float:
    return time.perf_counter() - t0


def base_result(spec: dict) -> dict:
    """The fields every result carries, filled in by the runners as they go."""
    return dict(
        framework=spec["framework"],
        workload=spec["workload"],
        num_seeds=spec.get("num_seeds", 1),
        import_seconds=None,
        setup_seconds=None,
        compile_seconds=None,
        train_seconds=None,
        time_to_result_seconds=None,
        env_steps=None,
        aggregate_env_steps=None,
        steady_seconds=None,
        steady_steps_per_second=None,
        final_return=None,
        final_return_min=None,
        eval_episodes=spec.get("eval_episodes"),
        time_to_solve_seconds=None,
        solve_env_steps=None,
        python=platform.python_version(),
        pid=os.getpid(),
        notes=[],
    )


def spread(per_seed) -> tuple[float, float]:
    """`(median, min)` over seeds of the per-seed mean return."""
    import numpy as np

    per_seed = np.asarray(per_seed, dtype=np.float64).reshape(-1)
    return float(np.median(per_seed)), float(np.min(per_seed))


# ----------------------------------------------------------------------------------------------
# Greedy evaluation shared by the gymnax-based frameworks (acjax, rejax)
# ----------------------------------------------------------------------------------------------


def make_gymnax_cartpole():
    """gymnax's CartPole-v1 and its default parameters (episode limit 500)."""
    return make_gymnax("CartPole-v1")


def make_gymnax(name: str):
    """gymnax's environment `name` and its default parameters (no acjax wrappers)."""
    import gymnax

    return gymnax.make(name)


def greedy_returns(env, env_params, act, key, num_episodes: int, max_steps: int):
    """Undiscounted return of the first episode of `num_episodes` environments run side by side.

    `act(obs[E, obs_dim]) -> action[E]` is the greedy (deterministic) policy. Works with the
    6-value `step` of gymnax >= 1.0 (terminated, truncated) and the older 5-value one (done).
    The scan runs `max_steps` steps (the episode limit), so every first episode ends; steps after
    an episode's end (gymnax resets automatically) are not counted. Jit it with `num_episodes`
    and `max_steps` fixed (they set shapes).
    """
    import jax
    import jax.numpy as jnp

    reset_key, run_key = jax.random.split(key)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(reset_key, num_episodes), env_params
    )
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def body(carry, step_key):
        obs, state, ret, finished = carry
        out = step(jax.random.split(step_key, num_episodes), state, act(obs), env_params)
        if len(out) == 6:
            obs, state, reward, terminated, truncated, _ = out
            done = jnp.logical_or(terminated, truncated)
        else:
            obs, state, reward, done, _ = out
        ret = ret + jnp.where(finished, 0.0, reward.astype(jnp.float32))
        return (obs, state, ret, jnp.logical_or(finished, done)), None

    init = (obs, state, jnp.zeros(num_episodes, jnp.float32), jnp.zeros(num_episodes, bool))
    (_, _, ret, _), _ = jax.lax.scan(body, init, jax.random.split(run_key, max_steps))
    return ret


def greedy_eval(act_of, params, keys, num_episodes: int,
                env_name: str = "CartPole-v1") -> tuple[float, float]:
    """`(median, min)` over seeds of the mean greedy return of each seed on gymnax's
    `env_name` (default CartPole-v1), with its default parameters.

    Args:
      act_of: `params_of_one_seed -> (obs[E, obs_dim] -> action[E, ...])`, the greedy policy
        (actions in the environment's own units: CartPole's integers, Pendulum's torques).
      params: one seed's parameters, or a stack of seeds' with leading axis `[K]` (with `keys`
        of shape `[K, 2]`).
      keys: one PRNG key, or `[K, 2]` keys (one per seed).
      num_episodes: episodes per seed.
    """
    import jax
    import numpy as np

    env, env_params = make_gymnax(env_name)
    max_steps = int(env_params.max_steps_in_episode)

    def one(p, k):
        return greedy_returns(env, env_params, act_of(p), k, num_episodes, max_steps)

    keys = jax.numpy.asarray(keys)
    fn = jax.jit(jax.vmap(one) if keys.ndim == 2 else one)
    returns = np.asarray(jax.device_get(fn(params, keys)))  # [K, E] or [E]
    return spread(returns.reshape(-1, num_episodes).mean(axis=1))


# ----------------------------------------------------------------------------------------------
# Time to solve: the first time the mean return of the last `window` training episodes >= a bar
# ----------------------------------------------------------------------------------------------


class SolveClock:
    """Watches training episodes and records when their recent mean first reaches `threshold`.

    `add(returns_sum, count, env_steps)` takes finished episodes in order, either one at a time
    (`count=1`) or as the sum and count of a group (one update's episodes when only aggregates
    exist); the recent mean is taken over the newest groups that hold at least `window`
    episodes.
    """

    def __init__(self, t0: float, threshold: float, window: int):
        self.t0, self.threshold, self.window = t0, threshold, window
        self.groups: list[tuple[float, float]] = []
        self.seconds: float | None = None
        self.env_steps: int | None = None

    def recent_mean(self) -> float | None:
        total = count = 0.0
        for s, c in reversed(self.groups):
            total, count = total + s, count + c
            if count >= self.window:
                return total / count
        return None

    def add(self, returns_sum: float, count: float, env_steps: int) -> None:
        if count <= 0:
            return
        self.groups.append((float(returns_sum), float(count)))
        if len(self.groups) > 4 * self.window:
            del self.groups[: -2 * self.window]
        if self.seconds is None:
            mean = self.recent_mean()
            if mean is not None and mean >= self.threshold:
                self.seconds = since(self.t0)
                self.env_steps = int(env_steps)
