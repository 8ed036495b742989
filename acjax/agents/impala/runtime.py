"""The actor-learner at run time: actor threads, the queue, the published parameters.

`ActorLearner(config, learner, state)` starts `config.num_actors` threads. Each builds its
actor (`acjax.agents.impala.actors`) and loops: take the latest published parameters (waiting
while `config.max_policy_lag` would be exceeded), produce a trajectory (IMPALA) or the
gradient of its loss on one (A3C), and put it on a bounded queue (waiting while the queue is
full). The caller, the learner, takes items with `next_items`, updates its state and
`publish`es the new parameters; every item records the parameter version that produced it, so
the learner measures the policy lag of everything it consumes.

XLA releases the GIL while a jitted function runs, so the actor threads' unrolls, the learner's
update and (with `AsyncVectorEnv`) the environments' worker processes overlap. Nothing here
hangs: every wait has a timeout or watches the stop flag; an actor's exception stops the run
and surfaces as `ActorError` in the learner's next `next_items`; no item arrives within
`config.timeout` seconds: `ActorError` too.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from typing import Any, NamedTuple

import jax
import numpy as np

from acjax.agents.impala.actors import make_actor
from acjax.agents.impala.config import ImpalaConfig, LearnerState, Trajectory
from acjax.agents.impala.learner import Learner

__all__ = ["ActorError", "ActorLearner", "GradientItem", "devices_for"]

_POLL = 0.05  # seconds between checks of the stop flag while waiting
FIRST_ITEM_TIMEOUT = 300.0
"""Seconds the learner waits for the first item at least (the actors compile first)."""


class ActorError(RuntimeError):
    """An actor stopped (its exception, e.g. a dead environment worker) or none answered."""


class GradientItem(NamedTuple):
    """What an A3C actor sends: the gradient of its loss on one trajectory and its statistics.

    Attributes:
      grads: the gradient pytree (on the actor's device).
      metrics: the loss's metrics and the trajectory's episode statistics (scalars).
      obs: the trajectory's observations `[T, B, ...]` (for the learner's statistics).
      version, actor, index: as `Trajectory`'s.
    """

    grads: Any
    metrics: dict[str, Any]
    obs: Any
    version: int
    actor: int
    index: int


def devices_for(num_actors: int) -> tuple[Any, list[Any]]:
    """`(learner_device, [actor device per actor])` from the local devices.

    With one device everything shares it; otherwise the learner takes the first and the
    actors take the others in turn (on CPU: the XLA host devices the command line split the
    CPU into).
    """
    devices = jax.local_devices()
    if len(devices) == 1:
        return devices[0], [devices[0]] * num_actors
    others = devices[1:]
    return devices[0], [others[i % len(others)] for i in range(num_actors)]


class ActorLearner:
    """Actor threads around a learner's state (see the module docstring).

    Args:
      config: the run's configuration.
      learner: the learner's functions (`make_learner`).
      state: the learner's state to start from (its parameters are published at once).
      learner_device, actor_devices: where the learner's and each actor's work runs
        (default: `devices_for(config.num_actors)`).
    """

    def __init__(self, config: ImpalaConfig, learner: Learner, state: LearnerState, *,
                 learner_device=None, actor_devices=None):
        if learner_device is None or actor_devices is None:
            learner_device, actor_devices = devices_for(config.num_actors)
        self.config, self.learner = config, learner
        self.learner_device, self.actor_devices = learner_device, list(actor_devices)
        self._queue: queue.Queue = queue.Queue(maxsize=config.queue_size)
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._params: dict[Any, Any] = {}
        self._version = -1
        self._applied = 0  # items whose update has been published
        self._started = 0  # items actors have started
        self._errors: list[tuple[int, BaseException]] = []
        self.produced: collections.Counter = collections.Counter()  # (actor, index) -> times
        self.consumed: collections.Counter = collections.Counter()
        self.occupancy: list[int] = []  # queue length seen at each take
        self._base_key = np.asarray(state.key)
        self._start_version = int(state.version)
        self._grad_fn = jax.jit(learner.gradients)
        self.publish(state.policy, int(state.version), applied=0)
        self._threads = [
            threading.Thread(target=self._actor_main, args=(i,), name=f"acjax-actor-{i}",
                             daemon=True)
            for i in range(config.num_actors)
        ]

    # -- the learner's side ------------------------------------------------------------------

    def start(self) -> ActorLearner:
        for thread in self._threads:
            thread.start()
        return self

    def publish(self, policy: Any, version: int, *, applied: int | None = None) -> None:
        """Makes `policy` (a `Policy` of `version`) what actors start their next items with.

        `applied`: the items consumed so far whose update these parameters include (default:
        everything taken so far); actors waiting on `max_policy_lag` go on.
        """
        copies = {d: jax.device_put(policy, d) for d in set(self.actor_devices)}
        with self._cond:
            self._params, self._version = copies, version
            self._applied = sum(self.consumed.values()) if applied is None else applied
            self._cond.notify_all()

    def next_items(self, n: int, timeout: float | None = None) -> list[Trajectory | GradientItem]:
        """The next `n` items from the queue, in arrival order.

        Raises:
          ActorError: an actor stopped with an exception, or no item arrived within `timeout`
            seconds (default `config.timeout`) of the previous one.
        """
        items = []
        if timeout is None:
            timeout = self.config.timeout
            if not self.consumed:  # the first item waits for the actors' compiles too
                timeout = max(timeout, FIRST_ITEM_TIMEOUT)
        deadline = time.monotonic() + timeout
        while len(items) < n:
            self._raise_actor_error()
            try:
                item = self._queue.get(timeout=_POLL)
            except queue.Empty:
                if time.monotonic() > deadline:
                    alive = sum(t.is_alive() for t in self._threads)
                    raise ActorError(
                        f"no trajectory from any of the {self.config.num_actors} actors within "
                        f"{timeout:g} s ({alive} actor threads alive); the "
                        "environments may be hung (raise --timeout if they are only slow)"
                    ) from None
                continue
            self.occupancy.append(self._queue.qsize() + 1)
            self.consumed[(int(item.actor), int(item.index))] += 1
            items.append(item)
            deadline = time.monotonic() + timeout
        return items

    def close(self, timeout: float = 10.0) -> list[str]:
        """Stops the actors and closes their environments; returns the threads that did not
        end within `timeout` seconds (daemon threads, they never keep the process alive)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        return [t.name for t in self._threads if t.is_alive()]

    def __enter__(self) -> ActorLearner:  # noqa: PYI034 (start() returns self)
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def queue_length(self) -> int:
        return self._queue.qsize()

    def _raise_actor_error(self) -> None:
        if self._errors:
            actor, err = self._errors[0]
            raise ActorError(f"actor {actor} stopped: {type(err).__name__}: {err}") from err

    # -- the actors' side --------------------------------------------------------------------

    def _actor_main(self, actor: int) -> None:
        env = None
        try:
            with self._cond:
                initial = self._params[self.actor_devices[actor]]
            env = make_actor(self.config, self.learner, self.actor_devices[actor], actor,
                             self._base_key, initial)
            device = self.actor_devices[actor]
            root = jax.random.fold_in(jax.random.wrap_key_data(self._base_key), actor)
            root = jax.random.fold_in(root, self._start_version)
            index = 0
            while not self._stop.is_set():
                got = self._acquire(device)
                if got is None:
                    return
                policy, version = got
                key = jax.random.key_data(jax.random.fold_in(root, index))
                traj = env.unroll(policy, version, key)
                item: Any = traj
                if self.config.mode == "a3c":
                    grads, metrics = self._grad_fn(policy, traj)
                    item = GradientItem(grads, metrics, traj.obs, version, actor,
                                        int(traj.index))
                self.produced[(actor, int(traj.index))] += 1
                index += 1
                if not self._put(item):
                    return
        except BaseException as err:  # noqa: BLE001 - any failure stops the run, reported
            if not self._stop.is_set():
                self._errors.append((actor, err))
        finally:
            if env is not None:
                try:
                    env.close()
                except Exception:  # noqa: BLE001, S110 - closing a broken env must not mask
                    pass

    def _acquire(self, device) -> tuple[Any, int] | None:
        """The latest policy on `device` once starting one more item keeps the policy
        lag within `max_policy_lag` (None: stop)."""
        bound = self.config.max_policy_lag
        batch = self.config.batch_size if self.config.mode == "impala" else 1
        with self._cond:
            while not self._stop.is_set():
                if bound is None or self._started - self._applied < (bound + 1) * batch:
                    self._started += 1
                    return self._params[device], self._version
                self._cond.wait(_POLL)
        return None

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False
