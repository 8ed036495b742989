"""Animate a trained policy: `python -m acjax.render RUN_DIR --out episode.gif`.

Loads the run's latest checkpoint (`acjax.run.checkpoint.load_policy`; the run's `config.json`
rebuilds the networks), plays one episode with the greedy policy, and draws it with gymnax's own
visualiser (`gymnax.visualize.Visualizer`) into a GIF. gymnax draws the classic-control
environments (through gymnasium's renderer, which needs pygame: `pip install
'acjax[render]'`), the MinAtar games, Catch-bsuite, Pong-misc, PointRobot-misc, MetaMaze-misc
and FourRooms-misc; for any other environment the command says so and exits with status 2.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import pathlib
import sys
from collections.abc import Callable
from typing import Annotated, Any

import tyro

__all__ = ["CLASSIC_CONTROL", "VISUALISED", "RenderOptions", "check_renderable", "main",
           "play_episode", "render_run"]

CLASSIC_CONTROL = (
    "Acrobot-v1", "CartPole-v1", "Pendulum-v1", "MountainCar-v0", "MountainCarContinuous-v0",
)
VISUALISED = CLASSIC_CONTROL + (
    "Catch-bsuite", "Asterix-MinAtar", "Breakout-MinAtar", "Freeway-MinAtar", "Seaquest-MinAtar",
    "SpaceInvaders-MinAtar", "Pong-misc", "PointRobot-misc", "MetaMaze-misc", "FourRooms-misc",
)
"""Environments gymnax's `Visualizer` can draw."""


@dataclasses.dataclass(frozen=True)
class RenderOptions:
    """Play a trained policy for one episode and save it as a GIF."""

    run_dir: Annotated[pathlib.Path, tyro.conf.Positional]
    """Run directory with config.json and checkpoints/."""
    out: pathlib.Path = pathlib.Path("episode.gif")
    """The GIF to write (parent folders are created)."""
    seed: int = 0
    """Seed of the episode (reset and environment randomness)."""
    agent: int = 0
    """Which agent of a multi-seed or sweep run (setting h, seed k: h * num_seeds + k)."""
    deterministic: bool = True
    """Greedy actions (the mode); --no-deterministic samples from the policy."""
    max_steps: int | None = None
    """Stop the episode after this many steps (default: the environment's limit)."""
    every: int = 1
    """Draw every this many steps (a smaller GIF for long episodes)."""


def check_renderable(env_name: str) -> None:
    """Raises `ValueError` for an environment gymnax cannot draw, or a missing renderer."""
    if env_name not in VISUALISED:
        raise ValueError(
            f"env={env_name!r} has no gymnax visualiser, so it cannot be rendered; gymnax draws "
            f"{', '.join(VISUALISED)}"
        )
    if env_name in CLASSIC_CONTROL and (
        importlib.util.find_spec("gymnasium") is None or importlib.util.find_spec("pygame") is None
    ):
        raise ValueError(
            f"rendering {env_name} uses gymnasium's classic-control renderer, which needs "
            "gymnasium and pygame; pip install 'acjax[render]'"
        )


def play_episode(
    policy: Callable[..., Any], env, env_params, key, *, max_steps: int, deterministic: bool = True
) -> tuple[list[Any], list[float]]:
    """One episode of `policy` in a (raw gymnax) environment, as one jitted `lax.scan`.

    Returns:
      `(states, returns)`: the environment state at every step until the episode ends (or
      `max_steps`), and the return accumulated up to and including each step.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    from gymnax.environments import spaces

    space = env.action_space(env_params)
    reset_key, run_key = jax.random.split(key)

    @jax.jit
    def run(reset_key, run_key):
        obs, state = env.reset(reset_key, env_params)

        def step(carry, k):
            obs, state = carry
            act_key, step_key = jax.random.split(k)
            action = policy(obs, act_key, deterministic=deterministic)
            if isinstance(space, spaces.Box):
                action = jnp.clip(action, space.low, space.high)
            next_obs, next_state, reward, terminated, truncated, _ = env.step(
                step_key, state, action, env_params
            )
            done = jnp.logical_or(terminated, truncated)
            return (next_obs, next_state), (state, reward.astype(jnp.float32), done)

        _, out = jax.lax.scan(step, (obs, state), jax.random.split(run_key, max_steps))
        return out

    states, rewards, dones = jax.device_get(run(reset_key, run_key))
    done_at = np.flatnonzero(dones)
    length = int(done_at[0]) + 1 if done_at.size else max_steps
    frames = [jax.tree.map(lambda x, t=t: x[t], states) for t in range(length)]
    return frames, [float(r) for r in np.cumsum(rewards[:length])]


def render_run(options: RenderOptions) -> tuple[int, float]:
    """Renders `options.run_dir`'s policy to `options.out`; returns (steps, episode return)."""
    import jax

    from acjax.envs import import_gymnax
    from acjax.run.checkpoint import load_config, load_policy

    config, _ = load_config(options.run_dir)
    check_renderable(config.env)
    if options.out.suffix.lower() != ".gif":
        raise ValueError(f"out='{options.out}' must end with .gif (the animation is a GIF)")
    for name in ("every", "max_steps"):
        value = getattr(options, name)
        if value is not None and value < 1:
            raise ValueError(f"{name}={value} must be >= 1; pass e.g. --{name.replace('_', '-')} 2")
    policy = load_policy(options.run_dir, agent=options.agent)
    gymnax = import_gymnax()
    env, env_params = gymnax.make(config.env)
    max_steps = options.max_steps or int(env_params.max_steps_in_episode)
    states, returns = play_episode(
        policy, env, env_params, jax.random.PRNGKey(options.seed), max_steps=max_steps,
        deterministic=options.deterministic,
    )
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    from gymnax.visualize import Visualizer

    picks = list(range(0, len(states), options.every))

    class StepTitles(Visualizer):
        """gymnax's visualiser, titled with the episode's step (frames may skip steps)."""

        def update(self, frame):
            super().update(frame)
            t = picks[frame]
            self.ax.set_title(
                f"{self.env.name}: step {t + 1:4d} - return {returns[t]:7.2f}", fontsize=15
            )

    visualizer = StepTitles(env, env_params, [states[t] for t in picks], [returns[t] for t in picks])
    options.out.parent.mkdir(parents=True, exist_ok=True)
    visualizer.animate(str(options.out))
    return len(states), returns[-1]


def main(argv: list[str] | None = None) -> pathlib.Path:
    """`python -m acjax.render RUN_DIR [--out episode.gif]`; bad input exits with status 2."""
    from acjax.run.checkpoint import CheckpointError

    options = tyro.cli(RenderOptions, args=sys.argv[1:] if argv is None else argv,
                       prog="python -m acjax.render")
    # gymnasium's renderer draws with pygame off screen; it needs no sound and no greeting.
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        steps, episode_return = render_run(options)
    except (ValueError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"{steps} steps, return {episode_return:.2f} -> {options.out}")
    return options.out


if __name__ == "__main__":
    main()
