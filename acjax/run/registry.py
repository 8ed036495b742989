"""Every algorithm the command lines train, by name: its configuration class, preset,
`make_train` and CPU sizing rule; the command lines (`python -m acjax.ppo_a2c`, `acjax.sac`,
`acjax.td3`) are built from it.

Adding an on-policy agent takes one line in `ALGORITHMS` (`_onpolicy(reinforce.AGENT)`) beside
its file in `acjax.agents.onpolicy` and its entries in that family's presets.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

from acjax.agents.impala.config import ImpalaConfig
from acjax.agents.offpolicy import sac, td3
from acjax.agents.offpolicy.presets import sac_preset, td3_preset
from acjax.agents.onpolicy import a2c, ac, ppo, reinforce
from acjax.agents.onpolicy import loop as onpolicy
from acjax.agents.onpolicy.config import PPOA2CConfig
from acjax.agents.onpolicy.presets import ppo_a2c_preset
from acjax.cpu import sizing

__all__ = ["ALGORITHMS", "COMMAND_LINES", "Algorithm", "CommandLine", "algorithm",
           "command_line", "for_config"]


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """One algorithm as the command lines see it.

    Attributes:
      name: its `--algo` name (the configuration's `algo` field).
      module: the command line that trains it (`python -m MODULE`), also the public module
        that `config.json` records and `load_policy` rebuilds the trainer from.
      config_cls: its frozen configuration dataclass.
      preset: `(env, algo, name=None) -> config`, the family's presets (`name`: a named
        preset, `--preset`; a family without named presets raises `ValueError` for one).
      make_train: `(config, *, num_reports, axis_name, dense) -> Trainer`; `dense` is the
        networks' dense layer (None: the networks' own; ignored where a family has none to
        choose).
      validate: `(config) -> EnvSpec`; raises `ValueError` naming the field, value and fix.
      step_flops: `(config) -> int`, rough matmul FLOPs of one SGD step (the execution-thread
        rule, `acjax.cpu.host.configure_threads`).
      lone_agent_devices: `(config) -> int`, the CPU devices a single agent's environments are
        split over (None: 1; `acjax.cpu.host.configure_devices`).
    """

    name: str
    module: str
    config_cls: type
    preset: Callable[[str, str | None], Any]
    make_train: Callable[..., Any]
    validate: Callable[[Any], Any]
    step_flops: Callable[[Any], int]
    lone_agent_devices: Callable[[Any], int] | None = None


def _onpolicy(agent: onpolicy.OnPolicyAgent) -> Algorithm:
    def make_train(config, *, num_reports: int = 20, axis_name=None, dense=None):
        return onpolicy.make_train(config, agent, num_reports=num_reports, axis_name=axis_name,
                                   dense=dense)

    def validate(config):
        spec = config.validate()
        agent.validate(config)
        return spec

    return Algorithm(agent.name, "acjax.ppo_a2c", PPOA2CConfig, ppo_a2c_preset, make_train,
                     validate, sizing.onpolicy_step_flops, sizing.onpolicy_lone_agent_devices)


def _offpolicy(name: str, module: str, family) -> Algorithm:
    family_preset = sac_preset if family is sac else td3_preset

    def preset(env, algo=None, preset_name=None):
        if preset_name is not None:
            raise ValueError(
                f"preset={preset_name!r}: python -m {module} has no named presets; drop --preset"
            )
        return family_preset(env, algo)

    def make_train(config, *, num_reports: int = 20, axis_name=None, dense=None):
        del dense  # the off-policy networks are flax modules applied as they are
        return family.make_train(config, num_reports=num_reports, axis_name=axis_name)

    config_cls = sac.SACConfig if family is sac else td3.TD3Config
    return Algorithm(name, module, config_cls, preset, make_train, lambda c: c.validate(),
                     sizing.offpolicy_step_flops)


def _alphazero() -> Algorithm:
    from acjax.agents.alphazero import loop as alphazero
    from acjax.agents.alphazero.config import AlphaZeroConfig
    from acjax.agents.alphazero.presets import alphazero_preset

    def make_train(config, *, num_reports: int = 20, axis_name=None, dense=None):
        return alphazero.make_train(config, num_reports=num_reports, axis_name=axis_name,
                                    dense=dense)

    # A searched move costs num_simulations network evaluations: never "small" for the
    # one-thread rule (acjax.cpu.host.configure_threads).
    return Algorithm("alphazero", "acjax.alphazero", AlphaZeroConfig, alphazero_preset,
                     make_train, lambda c: c.validate(), lambda c: 10**12)


ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in (
    _onpolicy(ppo.AGENT),
    _onpolicy(a2c.AGENT),
    _onpolicy(reinforce.AGENT),
    _onpolicy(ac.AGENT),
    _offpolicy("sac", "acjax.sac", sac),
    _offpolicy("td3", "acjax.td3", td3),
    _offpolicy("ddpg", "acjax.td3", td3),
    _alphazero(),
)}


@dataclasses.dataclass(frozen=True)
class CommandLine:
    """A command line: the algorithms one module trains (the first one is the default)."""

    module: str
    description: str
    algos: tuple[str, ...]

    @property
    def config_cls(self) -> type:
        return ALGORITHMS[self.algos[0]].config_cls

    @property
    def preset(self) -> Callable[[str, str | None], Any]:
        return ALGORITHMS[self.algos[0]].preset


COMMAND_LINES: dict[str, str] = {
    "acjax.ppo_a2c": "On-policy actor-critics on gymnax environments: PPO, A2C, REINFORCE and "
                     "the one-step actor-critic.",
    "acjax.sac": "Soft Actor-Critic (SAC) on gymnax environments with continuous actions.",
    "acjax.td3": "TD3 and DDPG on gymnax environments with continuous actions.",
    "acjax.alphazero": "AlphaZero: search-guided self-play on pgx board games, and search with "
                       "the environment as its own model on gymnax (needs acjax[search]).",
}
"""Each command line's module and the description its `--help` starts with."""


@functools.cache
def command_line(module: str) -> CommandLine:
    """The command line `python -m MODULE` (ValueError for an unknown module)."""
    if module not in COMMAND_LINES:
        raise ValueError(f"{module} is not an acjax command line; one of {sorted(COMMAND_LINES)}")
    algos = tuple(a.name for a in ALGORITHMS.values() if a.module == module)
    return CommandLine(module, COMMAND_LINES[module], algos)


def algorithm(name: str, module: str | None = None) -> Algorithm:
    """The algorithm `name` (of command line `module`, when given).

    Raises:
      ValueError: naming the algorithms there are.
    """
    known = [a for a, spec in ALGORITHMS.items() if module is None or spec.module == module]
    if name not in known:
        where = f" of python -m {module}" if module else ""
        raise ValueError(
            f"algo={name!r} is not one of {', '.join(repr(k) for k in sorted(known))}{where}"
        )
    return ALGORITHMS[name]


def for_config(config) -> Algorithm:
    """The algorithm a configuration describes (by its `algo` and its class)."""
    modules = {a.module for a in ALGORITHMS.values() if a.config_cls is type(config)}
    if not modules:
        raise ValueError(f"{type(config).__name__} is not an acjax algorithm's configuration")
    return algorithm(config.algo, modules.pop() if len(modules) == 1 else None)


def public_module(config_cls: type) -> str:
    """The public module of a configuration class (`config.json`'s `module`)."""
    for a in ALGORITHMS.values():
        if a.config_cls is config_cls:
            return a.module
    if config_cls is ImpalaConfig:  # the actor-learner's own command line (acjax.run.actor_learner)
        return "acjax.impala"
    return config_cls.__module__
