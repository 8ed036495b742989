"""Sizing rules for the CPU: how many XLA host devices and execution threads a run gets.

Each rule reads a run's configuration (its fields, duck-typed: nothing here imports an
algorithm) and the host's cores, and is applied by `acjax.cpu.host` before JAX's backend
starts. They change speed only, except the lone-agent split (`data_parallel_devices`), which
changes computed values in the last bits: gradients are summed per device, then averaged.
"""

from __future__ import annotations

import itertools
import os

__all__ = [
    "SMALL_STEP_FLOPS",
    "SPLIT_STEP_SAMPLES",
    "data_parallel_devices",
    "hidden_products",
    "offpolicy_step_flops",
    "onpolicy_lone_agent_devices",
    "onpolicy_step_flops",
    "step_flops",
]


SMALL_STEP_FLOPS = 64_000_000
"""SGD steps up to this many matmul FLOPs (forward and backward over the hidden layers, see
`step_flops`) run faster on a one-thread execution pool on CPU. Measured on 2
cores with PPO on CartPole-v1 (64x64 networks, 4 minibatches), steady steps/s on one thread
against two: 4 envs x 128 steps (128 samples per step, 6 MFLOP) 155-189k against 101-117k;
16 x 256 (1,024 samples, 50 MFLOP) 168-198k against 145-159k; 64 x 128 (2,048 samples,
101 MFLOP) 168-190k against 182-213k."""


SPLIT_STEP_SAMPLES = 4096
"""A lone agent's environments are split over several CPU devices (data parallelism, one per
core) when each device's share of an SGD minibatch still holds at least this many samples (see
`data_parallel_devices`). Measured on 2 cores with PPO on CartPole-v1 (64x64 networks, 4
minibatches), one program on two threads against two devices of half the environments each,
alternated in one process, steady steps/s: 2,048 samples per SGD step 263k against 181k;
4,096 samples 296k against 247k; 8,192 samples 290-303k against 324-347k; 32,768 samples 291k
against 330k. Each device then runs its half of every kernel on its own thread, where one
program leaves the second core idle about a third of the time. With 256x256 networks at 1,024
samples (Breakout-MinAtar's preset) two devices ran no faster (24k steps/s either way)."""


def data_parallel_devices(samples: int, num_envs: int, cores: int | None = None) -> int:
    """CPU devices to split one agent's `num_envs` environments over when each SGD step
    trains on `samples` samples: the most, up to `cores` (default: this process's), that
    divide `num_envs` and leave each device at least `SPLIT_STEP_SAMPLES`; 1 when none does."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
    fits = [d for d in range(2, cores + 1)
            if num_envs % d == 0 and samples >= d * SPLIT_STEP_SAMPLES]
    return max(fits, default=1)


def hidden_products(layers) -> int:
    """Sum of `a * b` over consecutive hidden widths: one sample's hidden-layer matmul
    multiply-adds (input and output layers left out), the unit of the `step_flops` estimates."""
    return sum(a * b for a, b in itertools.pairwise(layers))


def step_flops(samples: int, hidden_sizes, critic_hidden_sizes=()) -> int:
    """`6 * samples * sum of hidden-layer products` of actor and critic: the matmul FLOPs of one
    forward and backward pass without the input and output layers (the observation size is not
    known before the environment is built)."""
    actor = list(hidden_sizes)
    critic = list(critic_hidden_sizes) or actor
    return 6 * samples * max(hidden_products(actor) + hidden_products(critic), 1)


def _onpolicy_samples(config) -> int:
    return config.num_envs * config.num_steps // max(config.num_minibatches, 1)


def onpolicy_step_flops(config) -> int:
    """Rough matmul FLOPs of one SGD step of an on-policy configuration (`step_flops` of its
    minibatch, `num_envs * num_steps / num_minibatches` samples)."""
    network = config.network
    return step_flops(_onpolicy_samples(config), network.hidden_sizes,
                      network.critic_hidden_sizes)


def onpolicy_lone_agent_devices(config, cores: int | None = None) -> int:
    """CPU devices a single on-policy agent's environments are split over:
    `data_parallel_devices` of its SGD step (1 for small steps)."""
    return data_parallel_devices(_onpolicy_samples(config), config.num_envs, cores)


def offpolicy_step_flops(config) -> int:
    """Rough matmul FLOPs of one gradient step of SAC, TD3 or DDPG:
    `6 * batch_size * (A + 2 K C)`, with A and C the sums of the actor's and one critic's
    hidden-layer products and K the number of critics (1 for DDPG, else 2): the actor runs
    forward and backward about once per step, each critic about twice (on the batch and
    through the policy's actions)."""
    actor = config.network.hidden_sizes
    critic = config.network.critic_hidden_sizes or actor
    critics = 1 if config.algo == "ddpg" else 2
    return 6 * config.batch_size * max(
        hidden_products(actor) + 2 * critics * hidden_products(critic), 1
    )
