"""Splitting the host CPU into XLA devices and sizing its execution pool, before JAX starts.

The command lines call these with the parsed options and the sizing rules of
`acjax.cpu.sizing`; both must run before anything starts JAX's backend (creating an array
does), and both do nothing on an accelerator.
"""

from __future__ import annotations

import os
import re

from acjax.cpu import backend, sizing

__all__ = ["configure_devices", "configure_threads"]

DEVICE_COUNT_FLAG = "xla_force_host_platform_device_count"


def configure_devices(
    *,
    cpu_devices: int | None,
    num_agents: int,
    num_devices: int | None = None,
    num_processes: int | None = None,
    device_split: str = "auto",
    lone_agent_devices: int = 1,
) -> int | None:
    """Splits the host CPU into XLA devices (sets `XLA_FLAGS` before JAX starts).

    One XLA CPU device runs a program's small operations on about one core; several devices
    run their agents' programs side by side, so independent agents keep every core busy.
    Without `cpu_devices`, the count is the largest divisor of `num_agents` up to 4 per core
    (whole agents per device); a single agent gets `lone_agent_devices` (the algorithm's rule
    for its SGD step, see `acjax.cpu.sizing.onpolicy_lone_agent_devices`), its environments
    then split over them. Nothing changes when `XLA_FLAGS` already sets a host device count.

    Returns:
      The device count it chose for a lone agent's split environments (the command line
      records it as the run's `cpu_devices`, so a resumed run gets the same layout), else None.

    Raises:
      ValueError: `cpu_devices` < 1.
    """
    if cpu_devices is not None and cpu_devices < 1:
        raise ValueError(f"cpu_devices={cpu_devices} must be >= 1; pass e.g. --cpu-devices 2")
    lone = None
    count = cpu_devices
    if count is None:
        # Small per-agent programs leave a core partly idle, so up to 4 devices per core pay
        # off (measured on 2 cores: 64 agents on 1/2/4/8 devices ran at ~57k/77k/100k/116k
        # steps/s); the count must divide the agents so whole agents go to each device.
        agents, cores = max(num_agents, 1), os.cpu_count() or 1
        count = max(d for d in range(1, min(agents, 4 * cores) + 1) if agents % d == 0)
        if (agents == 1 and num_devices is None and (num_processes or 1) == 1
                and device_split != "agents"):
            count = max(lone_agent_devices, 1)
            lone = count if count > 1 else None
        if num_devices is not None:
            count = max(count, num_devices)
    flags = os.environ.get("XLA_FLAGS", "")
    if count > 1 and DEVICE_COUNT_FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --{DEVICE_COUNT_FLAG}={count}".strip()
        return lone
    return None


def configure_threads(
    *, cpu_threads: int | None, num_processes: int | None = None, step_flops: int | None = None
) -> int | None:
    """Starts JAX's CPU backend with a one-thread execution pool when that runs faster.

    `cpu_threads` asks for that many; without it, a run on one device and one process whose
    SGD step costs at most `sizing.SMALL_STEP_FLOPS` (`step_flops`, the algorithm's estimate)
    gets one thread. Must run before anything starts JAX's backend.

    Returns:
      The pool size it started the backend with, or None (JAX's default: one per core).

    Raises:
      ValueError: `cpu_threads` < 1.
    """
    if cpu_threads is not None and cpu_threads < 1:
        raise ValueError(f"cpu_threads={cpu_threads} must be >= 1; pass e.g. --cpu-threads 1")
    threads = cpu_threads
    if threads is None:
        devices = [int(n) for n in
                   re.findall(rf"{DEVICE_COUNT_FLAG}=(\d+)", os.environ.get("XLA_FLAGS", ""))]
        single = (not devices or devices[-1] == 1) and (num_processes or 1) == 1
        if not (single and step_flops is not None and step_flops <= sizing.SMALL_STEP_FLOPS):
            return None
        threads = 1
    return backend.start_cpu_backend(threads)
