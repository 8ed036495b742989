"""gymnasium environments stepped on the host, in batches, through gymnasium's vector environments.

A name `gymnasium:<id>` selects gymnasium's registered environment `<id>` (e.g.
"gymnasium:CartPole-v1"; an id `module:Env-v0` imports `module` first, as `gymnasium.make`
does). Such environments run in Python on the host, not inside jitted programs: acjax's actor
threads step a `HostVectorEnv` with numpy actions and read numpy results. This module imports
neither gymnasium (only on first use, so its absence is reported with the install command) nor
JAX itself (it reads `EnvSpec` from `acjax.envs.gymnax`).

The conventions are the ones acjax's gymnax environments follow (`acjax.envs.gymnax`):

* `terminated` and `truncated` stay apart: `terminated` is the MDP's own end (bootstrap with
  zero), `truncated` the time limit (bootstrap from the true successor). A step that does both
  reads `terminated=True, truncated=False`: gymnasium's `TimeLimit` sets both there, and acjax
  reports `truncated` only where the step did not also terminate (as its Brax adapter does), so
  `truncated` alone always means "bootstrap from `final_obs`";
* environments auto-reset in the step that ends an episode (gymnasium's
  `AutoresetMode.SAME_STEP`): `HostStep.obs` is already the first observation of the next
  episode, and `HostStep.final_obs` the true successor `s'_t` (the episode's last observation
  where it ended, `obs` elsewhere), as gymnax's `info["final_observation"]`;
* every step reports the undiscounted return and length of the episode that ended at it
  (`HostStep.episode_return`, `HostStep.episode_length`, valid where
  `terminated | truncated`, zero elsewhere), as gymnax's `EpisodeStatistics`;
* continuous actions are clipped to the `Box` bounds before they reach the environment (the
  learner keeps the unclipped sample, so its log-probability stays exact);
* observations and rewards arrive as float32, whatever the environment's dtypes.

acjax supports `Box` observation spaces and `Discrete` (starting at 0) or 1-D `Box` action
spaces; `check_gymnasium_name` refuses every other with a `ValueError` that names the space.
The names, their checks and `host_env_spec` live in `acjax.envs.gymnasium_names`; this module
re-exports them.

Worker processes. `HostVectorEnv(..., asynchronous=True)` steps the environments in worker
processes (`gymnasium.vector.AsyncVectorEnv`), started with `multiprocessing`'s default start
method unless `context=` names one: "fork" on Linux up to Python 3.13, "forkserver" from Python
3.14, "spawn" on macOS and Windows. The default stays because forking is what makes workers
cheap: on the 2-core development machine, in a process whose main module imports JAX, 4
CartPole workers started in 0.05 s by "fork" and in 5-10 s by "forkserver" or "spawn" (each of
those workers re-imports the main module, JAX included, before it builds its environment).
Forking a process that runs JAX makes JAX warn ("os.fork() was called ... JAX is
multithreaded, so this will likely lead to a deadlock"): the danger is a child that uses JAX,
and the workers never do; they run gymnasium and numpy only. Pass `context="forkserver"` (or
"spawn") to keep JAX's threads out of the picture altogether. Either way the workers need not
import acjax: each builds its environment with `gymnasium.make` from the registered `EnvSpec`,
resolved in the parent (so environments that the parent registered need only an importable
entry point, or one cloudpickle can carry, such as a class defined in `__main__`).

Every wait for the workers is bounded by `timeout`: a worker that dies (even by SIGKILL), hangs
or raises surfaces as an `EnvWorkerError` naming the worker and what happened, within about
`timeout` seconds; the environment is then unusable, and `close()` terminates (and if need be
kills) the workers without waiting on them. Only the construction of an `AsyncVectorEnv` waits
for its workers without a bound (gymnasium's own handshake): a worker that fails to build its
environment there surfaces as an `EnvWorkerError` too, once its pipe closes.
"""

from __future__ import annotations

import contextlib
import functools
import math
import multiprocessing
import multiprocessing.connection
import queue
import signal
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from acjax.envs.gymnasium_names import (
    PREFIX,
    _make,
    _read_spec,
    _registered,
    check_gymnasium_name,
    gymnasium_id,
    host_env_spec,
    is_gymnasium_name,
)
from acjax.envs.gymnax import EnvSpec

__all__ = [
    "PREFIX",
    "EnvWorkerError",
    "HostStep",
    "HostVectorEnv",
    "check_gymnasium_name",
    "evaluate_host",
    "gymnasium_id",
    "host_env_spec",
    "is_gymnasium_name",
]

_DEFAULT_EVAL_STEPS = 100_000
_LIVENESS_PERIOD_S = 0.5  # how often a wait for the workers also checks that they live
_KILL_GRACE_S = 1.0  # how long close() waits for a terminated worker before killing it


# ----------------------------------------------------------------------------------------------
# Vector environments
# ----------------------------------------------------------------------------------------------


class EnvWorkerError(RuntimeError):
    """A vector environment's worker process died, hung past the timeout, or raised."""


class HostStep(NamedTuple):
    """One step of `B = num_envs` environments, as numpy arrays.

    Attributes:
      obs: `[B, *obs_shape]` float32, the next observation to act on: the first observation of a
        new episode where one ended.
      reward: `[B]` float32.
      terminated: `[B]` bool, the episode ended in a terminal state.
      truncated: `[B]` bool, the episode hit its time limit without terminating (a step that
        does both is `terminated` only).
      final_obs: `[B, *obs_shape]` float32, the true successor `s'_t`: the episode's last
        observation where it ended (`terminated | truncated`), equal to `obs` elsewhere.
      episode_return: `[B]` float32, the undiscounted return of the episode that ended at this
        step (where `terminated | truncated`; 0 elsewhere).
      episode_length: `[B]` int32, its number of steps (where it ended; 0 elsewhere).
    """

    obs: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    final_obs: np.ndarray
    episode_return: np.ndarray
    episode_length: np.ndarray


class HostVectorEnv:
    """`num_envs` copies of a gymnasium environment, stepped together on the host.

    Args:
      env: "gymnasium:<id>", e.g. "gymnasium:CartPole-v1".
      num_envs: number of environments, >= 1.
      asynchronous: step them in worker processes (`gymnasium.vector.AsyncVectorEnv`, one
        process each) rather than one after another in this process (`SyncVectorEnv`).
      seed: environment `i` is seeded with `seed + i` on the first `reset()`.
      timeout: seconds to wait for the workers' answer to a `reset` or `step` before raising
        `EnvWorkerError` (None: wait for ever); the asynchronous case only.
      context: the `multiprocessing` start method for the workers ("fork", "spawn",
        "forkserver"; None: the platform's default, see the module docstring).
      **make_kwargs: forwarded to `gymnasium.make` (e.g. `max_episode_steps=100`).

    Raises:
      ValueError: an unusable `env` (see `check_gymnasium_name`), `num_envs` or `timeout`.
      EnvWorkerError: a worker process died while starting.
    """

    def __init__(
        self,
        env: str,
        num_envs: int,
        *,
        asynchronous: bool = False,
        seed: int = 0,
        timeout: float | None = 60.0,
        context: str | None = None,
        **make_kwargs: Any,
    ):
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or (
            num_envs < 1
        ):
            raise ValueError(f"num_envs={num_envs!r} must be an integer >= 1")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float))
            or not (timeout > 0 and math.isfinite(timeout))
        ):
            raise ValueError(
                f"timeout={timeout!r} must be a positive number of seconds, or None to wait "
                "for ever"
            )
        self._closed = True  # until the vector environment exists
        gym, registered = _registered(env)
        probe = _make(gym, env, registered, make_kwargs)
        try:
            self._spec = _read_spec(gym, env, probe)
        except BaseException:
            probe.close()
            raise
        self.env = env
        self.num_envs = int(num_envs)
        self.asynchronous = bool(asynchronous)
        self.seed = int(seed)
        self.timeout = None if timeout is None else float(timeout)
        self._label = (
            f"{'Async' if asynchronous else 'Sync'}VectorEnv({registered.id!r}, {self.num_envs})"
        )
        act_space = probe.action_space
        self._act_dtype = act_space.dtype
        if not self._spec.discrete:
            self._low = np.broadcast_to(act_space.low, act_space.shape).astype(act_space.dtype)
            self._high = np.broadcast_to(act_space.high, act_space.shape).astype(act_space.dtype)
        # Each worker's thunk is `gymnasium.make(<registered EnvSpec>, **make_kwargs)`: pickled
        # (for "spawn" and "forkserver") it refers to gymnasium and the entry point, not acjax.
        make = functools.partial(gym.make, registered, **make_kwargs)
        vector = gym.vector
        mode = vector.AutoresetMode.SAME_STEP
        self._broken: str | None = None
        self._needs_reset = True
        self._seeded = False
        self._return = np.zeros(self.num_envs, np.float64)
        self._length = np.zeros(self.num_envs, np.int64)
        if not self.asynchronous:
            probe_fn = functools.partial(_first_then, probe)  # env 0 is the probe: built once
            self._envs = vector.SyncVectorEnv(
                [probe_fn] + [make] * (self.num_envs - 1), autoreset_mode=mode
            )
        else:
            probe.close()
            envs = vector.AsyncVectorEnv.__new__(vector.AsyncVectorEnv)
            try:
                envs.__init__([make] * self.num_envs, context=context, autoreset_mode=mode)
            except Exception as e:
                self._envs = envs
                message = f"{self._label} failed to start its workers: {self._describe(e)}"
                self._broken = message
                self._closed = False
                self.close()
                raise EnvWorkerError(f"{message}; the run stops") from e
            self._envs = envs
        self._closed = False

    # -- public face ---------------------------------------------------------------------------

    @property
    def spec(self) -> EnvSpec:
        """Static facts about the environment (name with the prefix, shapes, action space)."""
        return self._spec

    @property
    def worker_pids(self) -> list[int]:
        """The worker processes' ids (asynchronous), or [] (synchronous)."""
        if not self.asynchronous or not hasattr(self, "_envs"):
            return []
        return [p.pid for p in self._envs.processes]

    def __repr__(self) -> str:
        return (
            f"HostVectorEnv({self.env!r}, {self.num_envs}, asynchronous={self.asynchronous}, "
            f"seed={self.seed})"
        )

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self):
        if not getattr(self, "_closed", True):
            with contextlib.suppress(Exception):  # nothing to report to when collected
                self.close()

    def reset(self) -> np.ndarray:
        """Resets every environment (seeding env `i` with `seed + i` on the first call only).

        Returns:
          The first observations, `[num_envs, *obs_shape]` float32.
        """
        self._check_usable()
        seed = None if self._seeded else self.seed
        if self.asynchronous:
            obs, _ = self._call_workers(
                "reset", lambda: self._envs.reset_async(seed=seed), self._envs.reset_wait
            )
        else:
            obs, _ = self._call_sync("reset", lambda: self._envs.reset(seed=seed))
        self._seeded = True
        self._needs_reset = False
        self._return[:] = 0.0
        self._length[:] = 0
        return np.array(obs, np.float32)

    def step(self, actions: np.ndarray) -> HostStep:
        """Steps every environment once (auto-resetting those whose episode ends).

        Args:
          actions: discrete: integers `[num_envs]` in `[0, num_actions)`; continuous: floats
            `[num_envs, num_actions]`, clipped here to the `Box` bounds.

        Returns:
          A `HostStep`.

        Raises:
          EnvWorkerError: a worker died, raised, or gave no answer within `timeout` seconds (or
            an environment raised, in the synchronous case); the environment is then unusable.
        """
        self._check_usable()
        if self._needs_reset:
            raise RuntimeError(f"{self!r}: call reset() before step()")
        actions = self._prepare(actions)
        if self.asynchronous:
            obs, reward, terminated, truncated, infos = self._call_workers(
                "step", lambda: self._envs.step_async(actions), self._envs.step_wait
            )
        else:
            obs, reward, terminated, truncated, infos = self._call_sync(
                "step", lambda: self._envs.step(actions)
            )
        obs = np.array(obs, np.float32)
        terminated = np.asarray(terminated, np.bool_)
        truncated = np.asarray(truncated, np.bool_) & ~terminated  # terminated wins
        done = terminated | truncated
        final_obs = obs.copy()
        for i in np.flatnonzero(done):
            final_obs[i] = np.asarray(infos["final_obs"][i], np.float32)
        reward = np.asarray(reward, np.float64)
        self._return += reward
        self._length += 1
        episode_return = np.where(done, self._return, 0.0).astype(np.float32)
        episode_length = np.where(done, self._length, 0).astype(np.int32)
        self._return[done] = 0.0
        self._length[done] = 0
        return HostStep(obs, reward.astype(np.float32), terminated, truncated, final_obs,
                        episode_return, episode_length)

    def close(self) -> None:
        """Closes the environments and ends the workers (idempotent).

        Healthy workers are asked to close their environments and given `timeout` seconds to
        answer and exit; after an `EnvWorkerError`, or for workers found dead or too slow, the
        workers are terminated, and killed if they outlive the signal by a second.
        """
        if getattr(self, "_closed", True):
            return
        self._closed = True
        envs = self._envs
        if not self.asynchronous:
            envs.close()
            return
        if self._broken is None and all(p.is_alive() for p in envs.processes):
            self._ask_workers_to_close(envs)
        self._end_workers(envs)

    def _ask_workers_to_close(self, envs) -> None:
        """Sends gymnasium's worker command ("close", None) and waits, up to `timeout` seconds,
        for the answers and for the workers to exit (each closes its environment on the way)."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout

        def left() -> float | None:
            return None if deadline is None else max(deadline - time.monotonic(), 0.0)

        try:
            pending = [pipe for pipe in envs.parent_pipes if pipe is not None]
            for pipe in pending:
                pipe.send(("close", None))
            while pending and left() != 0.0:
                for pipe in multiprocessing.connection.wait(pending, timeout=left()):
                    pending.remove(pipe)
                    pipe.recv()
        except (OSError, EOFError):
            return  # a worker died meanwhile: _end_workers ends the rest
        for p in envs.processes:
            p.join(timeout=left())

    # -- internals -----------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        if self._broken is not None:
            raise EnvWorkerError(
                f"{self!r} is unusable after an earlier failure: {self._broken}"
            )

    def _prepare(self, actions: np.ndarray) -> np.ndarray:
        actions = np.asarray(actions)
        if self._spec.discrete:
            if actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer):
                raise ValueError(
                    f"actions (shape {actions.shape}, dtype {actions.dtype}) must be integers of "
                    f"shape ({self.num_envs},) for {self._spec.describe_action_space()}"
                )
            if np.any((actions < 0) | (actions >= self._spec.num_actions)):
                raise ValueError(
                    f"actions={actions.tolist()} must lie in [0, {self._spec.num_actions}) for "
                    f"{self._spec.describe_action_space()}"
                )
            return actions.astype(self._act_dtype)
        want = (self.num_envs, self._spec.num_actions)
        if actions.shape != want:
            raise ValueError(
                f"actions (shape {actions.shape}) must have shape {want} for "
                f"{self._spec.describe_action_space()}"
            )
        return np.clip(actions.astype(self._act_dtype), self._low, self._high)

    def _call_sync(self, what: str, call: Callable[[], Any]):
        try:
            return call()
        except Exception as e:
            message = f"{self._label}.{what}() raised {type(e).__name__}: {e}; the run stops"
            self._broken = message
            raise EnvWorkerError(message) from e
        except BaseException:  # e.g. KeyboardInterrupt: some environments may have stepped
            self._broken = f"{self._label}.{what}() was interrupted"
            raise

    def _call_workers(self, what: str, send: Callable[[], None], wait: Callable[..., Any]):
        """Sends one call to every worker and collects the answers within `self.timeout`."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        try:
            self._raise_if_dead(what)
            send()
            self._await_workers(what, deadline)
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            return wait(timeout=remaining)
        except EnvWorkerError as e:
            self._broken = str(e)
            raise
        except Exception as e:
            message = f"{self._label}.{what}() failed: {self._describe(e)}; the run stops"
            self._broken = message
            raise EnvWorkerError(message) from e
        except BaseException:  # e.g. KeyboardInterrupt: the answers are still owed
            self._broken = f"{self._label}.{what}() was interrupted"
            raise

    def _await_workers(self, what: str, deadline: float | None) -> None:
        """Returns once every worker has answered; raises `EnvWorkerError` at the deadline or as
        soon as a worker is found dead (a dead worker's pipe reads as ready, at its end)."""
        envs = self._envs
        pending = list(range(self.num_envs))
        while True:
            pending = [i for i in pending if not envs.parent_pipes[i].poll()]
            self._raise_if_dead(what)
            if not pending:
                return
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                workers = ", ".join(self._worker(i) for i in pending)
                raise EnvWorkerError(
                    f"{workers} of {self._label} gave no answer to {what}() within "
                    f"{self.timeout:g} s (hung?); the run stops"
                )
            wait_s = _LIVENESS_PERIOD_S if deadline is None else min(
                _LIVENESS_PERIOD_S, deadline - now
            )
            handles = [envs.parent_pipes[i] for i in pending]
            handles += [p.sentinel for p in envs.processes]
            multiprocessing.connection.wait(handles, timeout=wait_s)

    def _raise_if_dead(self, what: str) -> None:
        """Raises `EnvWorkerError` when a worker has exited: killed, crashed, or ended by an
        error its environment raised (gymnasium's worker then sends the error and exits)."""
        dead = [i for i, p in enumerate(self._envs.processes) if p.exitcode is not None]
        if not dead:
            return
        parts = [self._last_words(i) or self._died(i) for i in dead]
        raise EnvWorkerError(f"{self._label}.{what}() failed: {'; '.join(parts)}; the run stops")

    def _last_words(self, i: int) -> str | None:
        """The error a dead worker reported before it exited, if it did."""
        pipe = self._envs.parent_pipes[i]
        try:
            if pipe is None or not pipe.poll():
                return None
            _, ok = pipe.recv()
            if ok:
                return None
            index, exc_type, value, _ = self._envs.error_queue.get(timeout=_KILL_GRACE_S)
        except (EOFError, OSError, ValueError, TypeError, queue.Empty):
            return None
        return f"{self._worker(index)} raised {exc_type.__name__}: {value}"

    def _worker(self, i: int) -> str:
        processes = getattr(self._envs, "processes", [])
        pid = processes[i].pid if i < len(processes) else None
        return f"worker {i}" + (f" (pid {pid})" if pid is not None else "")

    def _died(self, i: int) -> str:
        code = self._envs.processes[i].exitcode
        how = f"exit code {code}"
        if code is not None and code < 0:
            try:
                how += f", {signal.Signals(-code).name}"
            except ValueError:
                pass
        return f"{self._worker(i)} died ({how})"

    def _describe(self, error: BaseException) -> str:
        """What went wrong, naming the workers involved where they can be told."""
        envs = self._envs
        processes = getattr(envs, "processes", [])
        pipes = getattr(envs, "parent_pipes", [])
        if not isinstance(error, (EOFError, OSError)):
            failed = [i for i, pipe in enumerate(pipes) if pipe is None]  # gymnasium's mark
            if failed:
                who = ", ".join(self._worker(i) for i in failed)
                return f"{who} raised {type(error).__name__}: {error}"
        else:
            # A closed pipe: its worker is gone, or about to be reaped; wait for it briefly.
            end = time.monotonic() + _KILL_GRACE_S
            while time.monotonic() < end and all(p.exitcode is None for p in processes):
                multiprocessing.connection.wait([p.sentinel for p in processes], timeout=0.05)
        dead = [i for i, p in enumerate(processes) if p.exitcode is not None]
        if dead:
            died = "; ".join(self._died(i) for i in dead)
            return f"{died} ({type(error).__name__}: {error})"
        return f"a worker raised {type(error).__name__}: {error}"

    def _end_workers(self, envs) -> None:
        """Terminates the workers (killing those that outlive SIGTERM) and closes the pipes,
        without waiting on a worker's answer."""
        processes = getattr(envs, "processes", [])
        for p in processes:
            if p.exitcode is None:
                p.terminate()
        for sig_kill in (False, True):
            end = time.monotonic() + _KILL_GRACE_S
            for p in processes:
                p.join(timeout=max(end - time.monotonic(), 0.0))
            alive = [p for p in processes if p.exitcode is None]
            if not alive:
                break
            if not sig_kill:
                for p in alive:
                    p.kill()
        if hasattr(envs, "_state"):
            # gymnasium's close() would first wait for a pending call's answer from the workers
            from gymnasium.vector.async_vector_env import AsyncState

            envs._state = AsyncState.DEFAULT
        if hasattr(envs, "processes") and hasattr(envs, "parent_pipes"):
            envs.close(terminate=True)


def _first_then(env):
    """Returns `env` (an environment built already, for `SyncVectorEnv`'s first thunk)."""
    return env


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------


def evaluate_host(
    env: str,
    act: Callable[[np.ndarray], np.ndarray],
    num_episodes: int,
    *,
    seed: int,
    max_steps: int | None = None,
    **make_kwargs: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Runs `num_episodes` episodes of `env` on the host with the policy `act` (e.g. greedy).

    Episode `i` is the first episode of environment `i` of a `SyncVectorEnv`, seeded
    `seed + i`; later episodes of an environment are not counted.

    Args:
      env: "gymnasium:<id>".
      act: maps observations `[num_episodes, *obs_shape]` float32 to actions `[num_episodes]`
        (discrete) or `[num_episodes, num_actions]` (continuous; clipped here to the bounds).
      num_episodes: number of episodes, >= 1.
      seed: seed of the first environment.
      max_steps: steps to run at most (default: the time limit, or 100_000 without one); an
        episode still running then counts with its return and length so far.
      **make_kwargs: forwarded to `gymnasium.make`.

    Returns:
      `(returns [num_episodes] float32, lengths [num_episodes] int32)`.
    """
    if isinstance(num_episodes, bool) or not isinstance(num_episodes, (int, np.integer)) or (
        num_episodes < 1
    ):
        raise ValueError(f"num_episodes={num_episodes!r} must be an integer >= 1")
    if max_steps is not None and (isinstance(max_steps, bool) or max_steps < 1):
        raise ValueError(f"max_steps={max_steps!r} must be an integer >= 1, or None")
    with HostVectorEnv(env, int(num_episodes), seed=seed, **make_kwargs) as envs:
        limit = max_steps if max_steps is not None else (
            envs.spec.max_episode_steps or _DEFAULT_EVAL_STEPS
        )
        returns = np.zeros(num_episodes, np.float32)
        lengths = np.zeros(num_episodes, np.int32)
        finished = np.zeros(num_episodes, np.bool_)
        obs = envs.reset()
        for _ in range(int(limit)):
            step = envs.step(np.asarray(act(obs)))
            ended = (step.terminated | step.truncated) & ~finished
            returns[ended] = step.episode_return[ended]
            lengths[ended] = step.episode_length[ended]
            finished |= ended
            if finished.all():
                break
            obs = step.obs
        running = ~finished
        returns[running] = envs._return[running]
        lengths[running] = envs._length[running]
    return returns, lengths
