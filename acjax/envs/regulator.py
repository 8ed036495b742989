"""`Regulator1D-v0`: a one-dimensional linear-quadratic regulator, for teaching actor-critics.

The smallest continuous-control task whose optimal policy and value are known in closed form,
so that a learner's parameters can be compared with the answer:

  s'  = clip(s + a, -state_bound, state_bound),       s_0 ~ U[-init_bound, init_bound],
  r_t = -(s_t² + c a_t²),                             c = action_cost >= 0,

where `s_t` is the state the action `a_t` is taken in (the state observed before the step), so
the first reward of an episode, -s_0² - c a_0², already counts the initial state. The task is
continuing: it never terminates (`terminated` is always False) and is cut into episodes of
`max_steps_in_episode` steps by a time limit (`truncated`), so a learner should bootstrap from
the value of the last state, which depends on s alone.

Optimal policy without action cost (c = 0). Every reward is -s_t² <= 0, and the action moves the
state by exactly a: a = -s brings it to 0 in one step, after which a = 0 keeps it there and every
later reward is 0, the largest a reward can be. The first reward -s_0² does not depend on any
action. So the linear policy a = -s is optimal for every discount, with the value V*(s) = -s²:
slope theta1* = -1, P = 1 below.

Optimal policy with action cost (c > 0): discounted LQR. Write the value as V(s) = -P s². The
Bellman equation P s² = min_a [s² + c a² + gamma P (s + a)²] is minimised by a = -k s with

  k = gamma P / (c + gamma P),      P = 1 + c k² + gamma P (1 - k)²,

which simplifies to P = 1 + c gamma P / (c + gamma P), i.e. the quadratic
gamma P² + (c - gamma - c gamma) P - c = 0, whose positive root `optimal_gain` returns with
theta1* = -k (0 < k <= 1: the action cost makes the optimal controller move only part of the
way to 0; c = 0 gives k = 1 and P = 1 exactly).

Certainty equivalence. A Gaussian policy a = theta1 s + sigma eps (eps ~ N(0, 1)) explores with
noise that costs a constant, state-independent amount, and its best mean is the noise-free
optimum: for a = -k s + sigma eps the value is -P s² - sigma² (c + gamma P) / (1 - gamma), whose
s-dependent part is the noise-free -P s². So a learned linear-Gaussian actor's slope theta1
should approach theta1* = -k whatever its variance, and the optimal variance is 0.

Clipping. The optimal policy never reaches either bound: |a| = k |s| <= |s| <= state_bound lies
inside the action space [-2 state_bound, 2 state_bound], and |s'| = (1 - k) |s| <= |s| stays
inside [-state_bound, state_bound] once init_bound <= state_bound. Only exploring or poor
policies are clipped, which keeps their states bounded.

`Regulator1D` follows gymnax >= 1.0.1's environment API, as `acjax.envs.brax.BraxEnv` does,
without being a gymnax registry environment: `reset`, `step` returning
`(obs, state, reward, terminated, truncated, info)` with auto-reset and
`info["final_observation"]`, `default_params`, `observation_space`, `action_space`,
`num_actions` and `name`. `acjax.envs.make_env("Regulator1D-v0")` wraps it like any gymnax
environment with a `Box` action space. This module imports without gymnax; its spaces import
gymnax on first use.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

__all__ = [
    "Regulator1D",
    "RegulatorParams",
    "RegulatorState",
    "optimal_gain",
    "optimal_value",
]

ENV_ID = "Regulator1D-v0"
"""The name `acjax.envs.make_env` builds a `Regulator1D` for."""


@struct.dataclass
class RegulatorParams:
    """Parameters of `Regulator1D` (a frozen pytree, like gymnax's `EnvParams`).

    Attributes:
      max_steps_in_episode: the time limit T; every episode is truncated after T steps.
      action_cost: c >= 0 in r = -(s² + c a²). The default 0.01 keeps the optimum within 1%
        of the cost-free slope -1 (theta1* = -0.9901, P = 1.0099 at gamma = 0.99) while
        penalising large actions; larger costs move it further (c = 0.5: theta1* = -0.7299).
      state_bound: b > 0; states are clipped to [-b, b] and actions to [-2b, 2b].
      init_bound: initial states are drawn from U[-init_bound, init_bound]; 0 < init_bound <= b.
    """

    max_steps_in_episode: int = 20
    action_cost: float = 0.01
    state_bound: float = 5.0
    init_bound: float = 1.0


@struct.dataclass
class RegulatorState:
    """The regulator's state: its position and the step count of the current episode."""

    s: jax.Array  # [] float32, the position
    time: jax.Array  # [] int32, steps taken in the current episode


def _box():
    from acjax.envs.gymnax import import_gymnax

    import_gymnax()
    from gymnax.environments import spaces

    return spaces.Box


def _check_params(params: RegulatorParams) -> None:
    """Raises `ValueError` naming the field, its value and the fix (concrete fields only)."""
    t = params.max_steps_in_episode
    if isinstance(t, bool) or not isinstance(t, int | np.integer) or t < 1:
        raise ValueError(
            f"max_steps_in_episode={t!r} must be a positive integer (the time limit in steps); "
            "pass e.g. max_steps_in_episode=20"
        )
    c, b, b0 = (float(params.action_cost), float(params.state_bound), float(params.init_bound))
    if not (math.isfinite(c) and c >= 0.0):
        raise ValueError(f"action_cost={c!r} must be finite and >= 0; pass e.g. action_cost=0.01")
    if not (math.isfinite(b) and b > 0.0):
        raise ValueError(f"state_bound={b!r} must be finite and > 0; pass e.g. state_bound=5.0")
    if not (0.0 < b0 <= b):
        raise ValueError(
            f"init_bound={b0!r} must lie in (0, state_bound={b!r}] so that initial states are "
            "inside the state space; pass e.g. init_bound=1.0"
        )


class Regulator1D:
    """The 1-D regulator s' = clip(s + a), r = -(s² + c a²), with gymnax's API and auto-reset.

    Observations are `[1]` float32 (the state s), actions `[1]` float32 in
    [-2 state_bound, 2 state_bound] (actions outside are clipped by the environment too);
    `step` returns `(obs[1], state, reward[] f32, terminated[] bool, truncated[] bool, info)`
    with `info["final_observation"]` `[1]` (the state the step reached, before any reset),
    `info["terminated"]` (always False) and `info["truncated"]` (the time limit).

    Args:
      **params: fields of `RegulatorParams` overriding its defaults in `default_params`, e.g.
        `Regulator1D(action_cost=0.1)`; `acjax.envs.make_env("Regulator1D-v0", **params)`
        forwards them here.
    """

    def __init__(self, **params: Any):
        fields = set(RegulatorParams.__dataclass_fields__)
        unknown = sorted(set(params) - fields)
        if unknown:
            raise ValueError(
                f"{ENV_ID} has no parameter {', '.join(repr(u) for u in unknown)}; pass fields "
                f"of RegulatorParams: {', '.join(sorted(fields))}"
            )
        self._params = RegulatorParams(**params)
        _check_params(self._params)

    # -- gymnax's interface ----------------------------------------------------------------

    @property
    def default_params(self) -> RegulatorParams:
        return self._params

    @partial(jax.jit, static_argnames=("self",))
    def reset(
        self, key: jax.Array, params: RegulatorParams | None = None
    ) -> tuple[jax.Array, RegulatorState]:
        """A fresh episode, s_0 ~ U[-init_bound, init_bound]: `(obs[1], state)`."""
        if params is None:
            params = self.default_params
        bound = jnp.asarray(params.init_bound, jnp.float32)
        s = jax.random.uniform(key, (), jnp.float32, -bound, bound)
        return s[None], RegulatorState(s, jnp.int32(0))

    @partial(jax.jit, static_argnames=("self",))
    def step(
        self,
        key: jax.Array,
        state: RegulatorState,
        action: jax.Array,
        params: RegulatorParams | None = None,
    ) -> tuple[jax.Array, RegulatorState, jax.Array, jax.Array, jax.Array, dict[str, Any]]:
        """One step s' = clip(s + a), r = -(s² + c a²), then an auto-reset if the time is up.

        Args:
          key: PRNG key; the dynamics are deterministic, so it only seeds the reset.
          state: the current state (s, time).
          action: `[1]` (or `[]`) float, clipped to [-2 state_bound, 2 state_bound].
          params: `RegulatorParams` (None: `default_params`).

        Returns:
          `(obs[1], state, reward[] f32, terminated[] bool, truncated[] bool, info)`.
        """
        if params is None:
            params = self.default_params
        if jnp.size(action) != 1:
            raise ValueError(
                f"{ENV_ID}.step: action has shape {jnp.shape(action)}; pass one action of "
                "shape [1] (vmap over a batch of environments)"
            )
        bound = jnp.asarray(params.state_bound, jnp.float32)
        a = jnp.clip(jnp.reshape(jnp.asarray(action, jnp.float32), ()), -2 * bound, 2 * bound)
        s = state.s
        reward = -(jnp.square(s) + jnp.asarray(params.action_cost, jnp.float32) * jnp.square(a))
        s_next = jnp.clip(s + a, -bound, bound)
        time = state.time + 1
        terminated = jnp.zeros((), bool)
        truncated = time >= params.max_steps_in_episode
        reset_obs, reset_state = self.reset(key, params)
        new_state = RegulatorState(
            jnp.where(truncated, reset_state.s, s_next), jnp.where(truncated, 0, time)
        )
        obs = jnp.where(truncated, reset_obs, s_next[None])
        info = {
            "final_observation": s_next[None],
            "terminated": terminated,
            "truncated": truncated,
        }
        return obs, new_state, reward, terminated, truncated, info

    def observation_space(self, params: RegulatorParams | None = None):
        """`Box(-state_bound, state_bound, (1,))`."""
        params = self.default_params if params is None else params
        return _box()(-params.state_bound, params.state_bound, (1,), jnp.float32)

    def action_space(self, params: RegulatorParams | None = None):
        """`Box(-2 state_bound, 2 state_bound, (1,))`: wide enough to reach 0 from any state."""
        params = self.default_params if params is None else params
        return _box()(-2 * params.state_bound, 2 * params.state_bound, (1,), jnp.float32)

    @property
    def num_actions(self) -> int:
        """The action dimension, 1."""
        return 1

    @property
    def name(self) -> str:
        return ENV_ID

    def __repr__(self) -> str:
        p = self._params
        return (f"Regulator1D(max_steps_in_episode={p.max_steps_in_episode}, "
                f"action_cost={p.action_cost}, state_bound={p.state_bound}, "
                f"init_bound={p.init_bound})")


# ----------------------------------------------------------------------------------------------
# The optimum, in closed form (numpy)
# ----------------------------------------------------------------------------------------------


def optimal_gain(*, action_cost: float, gamma: float) -> tuple[float, float]:
    """The optimal linear policy's slope and the optimal value's curvature.

    With V*(s) = -P s² and the optimal mean action a = theta1* s, theta1* = -k:

      gamma P² + (c - gamma - c gamma) P - c = 0   (P > 0),      k = gamma P / (c + gamma P),

    the fixed point of P = 1 + c k² + gamma P (1 - k)² (see the module docstring). The positive
    root is taken in whichever of its two algebraically equal forms does not cancel, so c = 0
    gives exactly theta1* = -1 and P = 1.

    Args:
      action_cost: c >= 0.
      gamma: the discount, 0 < gamma <= 1.

    Returns:
      `(theta1_star, P)` as Python floats; -1 <= theta1_star < 0 and P >= 1.
    """
    c, g = float(action_cost), float(gamma)
    if not (math.isfinite(c) and c >= 0.0):
        raise ValueError(f"action_cost={action_cost!r} must be finite and >= 0; pass e.g. 0.01")
    if not (0.0 < g <= 1.0):
        raise ValueError(f"gamma={gamma!r} must lie in (0, 1]; pass e.g. gamma=0.99")
    b = c - g - c * g
    root = math.sqrt(b * b + 4.0 * g * c)
    p = (root - b) / (2.0 * g) if b <= 0.0 else 2.0 * c / (b + root)
    k = g * p / (c + g * p)
    return -k, p


def optimal_value(s: Any, *, action_cost: float, gamma: float) -> np.ndarray:
    """The noise-free optimal value V*(s) = -P s² (`optimal_gain`'s P), elementwise.

    Args:
      s: states, any shape.
      action_cost, gamma: as in `optimal_gain`.

    Returns:
      V*(s), a float64 numpy array of the shape of `s`.
    """
    _, p = optimal_gain(action_cost=action_cost, gamma=gamma)
    return -p * np.square(np.asarray(s, np.float64))
