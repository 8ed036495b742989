"""Training throughput of acjax PPO as environments, seeds and devices grow.

Every point trains through `acjax.run.parallel.make_runner`, the runner the command line uses
(with the CPU settings it starts with, `acjax.cpu.apply()`, and its dense layer,
`acjax.cpu.dense.for_backend()`), and reports the ahead-of-time compile time apart from the
steady-state env steps per second (the median over the chunks after the first). Sweeps:

* envs: CartPole-v1 (and a MinAtar game) at num_envs = 16 ... 16384, fixed num_steps, the
  preset's epochs and minibatches; beside each point, the same environments in a jitted
  random-action rollout and in `acjax.agents.rollout.rollout` with the trained policy (the two
  limits training cannot beat), and training as a fraction of each;
* seeds: 1 ... 1024 independent CartPole agents (16 envs x 64 steps each) in one program,
  aggregate steps/s;
* devices: 1, 2, 4, 8 devices (virtual CPU devices when there is no accelerator) with the
  1024 environments of one agent split over them ("envs", gradients averaged) or 64 agents of
  16 environments spread over them ("agents"); run in a child process, which sets XLA_FLAGS
  before JAX starts.

    python benchmarks/throughput.py            # full run: 12-15 minutes on a 2-core CPU
    python benchmarks/throughput.py --quick    # smoke run: 1-2 minutes

Writes benchmarks/results/throughput-<backend>.{json,md,png} (`--quick`: ...-quick.*).
Compile times are cold unless `--compilation-cache` is given; the report says which.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import gc
import importlib.metadata
import json
import math
import os
import pathlib
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from _hardware import cores as host_cores
from _hardware import cpu_model, load_average

import acjax.cpu
from acjax.agents.rollout import rollout
from acjax.cpu import dense
from acjax.envs import env_spec, make_env
from acjax.ppo_a2c import make_train, ppo_a2c_preset
from acjax.run import parallel

ROOT = pathlib.Path(__file__).resolve().parent
FULL = dict(
    envs=[16, 64, 256, 1024, 4096, 16384],
    minatar_envs=[16, 64, 256, 1024, 4096, 16384],
    seeds=[1, 4, 16, 64, 256, 1024],
    devices=[1, 2, 4, 8],
    chunk_steps=2**17,
    minatar_chunk_steps=2**15,
    timed_chunks=3,
    max_point_seconds=100.0,
)
QUICK = dict(
    envs=[256],
    minatar_envs=[16],
    seeds=[4],
    devices=[2],
    chunk_steps=2**14,
    minatar_chunk_steps=2**11,
    timed_chunks=2,
    max_point_seconds=30.0,
)


# ----------------------------------------------------------------------------------------------
# Measurements
# ----------------------------------------------------------------------------------------------


def cache_entries(cache_dir: str | None) -> int | None:
    """Files in the persistent compilation cache (None when the cache is off)."""
    if not cache_dir:
        return None
    path = pathlib.Path(cache_dir)
    return sum(1 for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def cache_outcome(before: int | None, after: int | None) -> str:
    """"off", "hit" (compiling wrote nothing new) or "miss" (it filled the cache)."""
    if before is None:
        return "off"
    return "hit" if after == before else "miss"


def estimated_gb(config, num_agents: int, obs_size: int) -> float:
    """Rough peak memory of one update, from XLA's temporary buffers on CPU: per env step about
    two float32 copies of the observation and 1.5 of every hidden activation (rollout, critic
    over observations and successors, shuffled minibatches, gradients)."""
    hidden = sum(config.network.hidden_sizes)
    hidden += sum(config.network.critic_hidden_sizes or config.network.hidden_sizes)
    per_step = 4 * (2 * obs_size + 1.5 * hidden)
    return per_step * num_agents * config.num_envs * config.num_steps / 1e9


def compiled_gb(compiled) -> float | None:
    """Memory XLA reserves for one call of a compiled program (temporaries and buffers; per
    device for a program mapped over devices)."""
    try:
        stats = compiled.memory_analysis()
        return (stats.temp_size_in_bytes + stats.argument_size_in_bytes
                + stats.output_size_in_bytes - stats.alias_size_in_bytes) / 1e9
    except Exception:  # noqa: BLE001  (not every backend or wrapper reports it)
        return None


class SkipPoint(Exception):
    """A point that cannot run here (its reason is printed and recorded)."""


def chunk_plan(batch: int, chunk_steps: int, timed_chunks: int) -> tuple[int, int]:
    """`(updates per chunk, timed chunks)`: the fewest whole updates holding at least
    `chunk_steps` env steps (`batch` per update, all agents); chunks of more than twice that
    (one update of a very large batch) are timed at most twice."""
    updates = max(1, math.ceil(chunk_steps / batch))
    if updates * batch > 2 * chunk_steps:
        timed_chunks = min(timed_chunks, 2)
    return updates, timed_chunks


def measure_training(
    config, *, num_agents: int = 1, num_devices: int = 1, split: str = "agents",
    chunk_steps: int, timed_chunks: int, cache_dir: str | None, max_gb: float,
) -> tuple[dict, object]:
    """Trains `num_agents` copies of `config` for a warm-up chunk and the timed chunks (see
    `chunk_plan`) through the runner.

    Returns the point's numbers and the runner and its final state (for the rollout limits);
    raises `SkipPoint` when the compiled chunk needs more than `max_gb`.
    """
    batch = config.num_envs * config.num_steps
    updates, timed_chunks = chunk_plan(batch * num_agents, chunk_steps, timed_chunks)
    num_chunks = 1 + timed_chunks
    config = dataclasses.replace(config, total_timesteps=num_chunks * updates * batch)
    layout = parallel.choose_layout(
        num_agents=num_agents, num_envs=config.num_envs, num_devices=num_devices, split=split
    )
    runner = parallel.make_runner(
        functools.partial(make_train, dense=dense.for_backend()), config, layout,
        num_reports=num_chunks, eval_episodes=1,
    )
    if runner.trainer.updates_per_chunk != updates:  # pragma: no cover (chunk_size picks it)
        raise RuntimeError(f"expected {updates} updates per chunk, runner chose "
                           f"{runner.trainer.updates_per_chunk}")
    train_keys, _ = parallel.agent_keys(np.arange(num_agents))
    hparams = parallel.stack_agents(
        jax.tree.map(lambda x: x[None], config.hyperparams()), num_agents
    )
    t0 = time.perf_counter()
    state = jax.block_until_ready(runner.init(train_keys, hparams))
    init_seconds = time.perf_counter() - t0
    before = cache_entries(cache_dir)
    t0 = time.perf_counter()
    compiled = runner.compile(state, hparams)
    compile_seconds = time.perf_counter() - t0
    load = os.getloadavg()[0]
    memory = compiled_gb(compiled)
    if memory is not None and memory > max_gb:
        raise SkipPoint(f"compiled chunk needs {memory:.1f} GB > --max-gb {max_gb:g}")
    cache = cache_outcome(before, cache_entries(cache_dir))
    chunk_seconds = []
    for i in range(num_chunks):
        if i == 1:  # CPU time of this process (all its threads) over the timed chunks
            cpu0 = time.process_time()
        t0 = time.perf_counter()
        state, metrics = runner.chunk(state, hparams)  # host arrays: the chunk has finished
        chunk_seconds.append(time.perf_counter() - t0)
    cores_busy = (time.process_time() - cpu0) / sum(chunk_seconds[1:])
    steady = statistics.median(chunk_seconds[1:])
    steps = updates * batch * num_agents
    count = metrics["episode_count"].sum()
    point = dict(
        env=config.env,
        num_agents=num_agents,
        num_devices=num_devices,
        split=layout.split,
        layout=layout.describe(),
        num_envs=config.num_envs,
        num_steps=config.num_steps,
        update_epochs=config.update_epochs,
        num_minibatches=config.num_minibatches,
        hidden_sizes=list(config.network.hidden_sizes),
        updates_per_chunk=updates,
        steps_per_chunk=steps,
        init_seconds=init_seconds,
        compile_seconds=compile_seconds,
        compilation_cache=cache,
        xla_memory_gb=memory,
        load_average_1min=load,
        host_cores_busy=cores_busy,
        chunk_seconds=chunk_seconds,
        steps_per_second=steps / steady,
        steps_per_second_min=steps / max(chunk_seconds[1:]),
        steps_per_second_max=steps / min(chunk_seconds[1:]),
        steps_per_second_per_agent=steps / steady / num_agents,
        last_chunk_train_return=float(metrics["episode_return_sum"].sum() / max(count, 1)),
        peak_rss_gb=peak_rss_gb(),
    )
    return point, (runner, state)


def measure_rollout_limits(runner, state, *, timed_chunks: int) -> dict:
    """Steps/s of the training chunk's rollouts alone: random actions, and the trained policy.

    Both run `updates_per_chunk` x `num_steps` steps of the same `num_envs` environments per
    jitted call (one training chunk's worth of experience), from the trained agent 0's state.
    """
    trainer = runner.trainer
    config, spec = trainer.config, trainer.spec
    num_envs, num_steps, updates = config.num_envs, config.num_steps, trainer.updates_per_chunk
    env, env_params = make_env(config.env)
    agent = jax.tree.map(lambda x: x[0], runner.agent_state(state))
    step_vmap = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def random_actions(key):
        if spec.discrete:
            return jax.random.randint(key, (num_envs,), 0, spec.num_actions)
        return jax.random.normal(key, (num_envs, spec.num_actions))

    def random_chunk(env_state, key):
        def step(carry, step_key):
            env_state, checksum = carry
            action_key, env_key = jax.random.split(step_key)
            obs, env_state, reward, _, _, _ = step_vmap(
                jax.random.split(env_key, num_envs), env_state, random_actions(action_key),
                env_params,
            )
            # Use the observations so they are computed, as training needs them.
            return (env_state, checksum + jnp.sum(reward) + jnp.sum(obs)), None

        (env_state, checksum), _ = jax.lax.scan(
            step, (env_state, jnp.float32(0)), jax.random.split(key, updates * num_steps)
        )
        return env_state, checksum

    def policy_chunk(carry, key, params):
        def one_rollout(carry, rollout_key):
            carry, traj = rollout(
                trainer.network, params, env, env_params, carry, rollout_key,
                num_steps=num_steps, gamma=config.gamma,
                normalize_observations=config.normalize_observations,
                scale_rewards=config.scale_rewards,
            )
            return carry, jnp.sum(traj.log_prob) + jnp.sum(traj.value) + jnp.sum(traj.reward)

        carry, sums = jax.lax.scan(one_rollout, carry, jax.random.split(key, updates))
        return carry, jnp.sum(sums)

    steps = updates * num_steps * num_envs
    limits = {}
    for name, fn, carry, extra in (
        ("random", random_chunk, jax.tree.map(jnp.copy, agent.env.env_state), ()),
        ("policy", policy_chunk, agent.env, (agent.params,)),
    ):
        jitted = jax.jit(fn, donate_argnums=0)
        key = jax.random.PRNGKey(1)
        t0 = time.perf_counter()
        compiled = jitted.lower(carry, key, *extra).compile()
        compile_seconds = time.perf_counter() - t0
        chunk_seconds = []
        for i in range(1 + timed_chunks):
            t0 = time.perf_counter()
            carry, checksum = compiled(carry, jax.random.fold_in(key, i), *extra)
            jax.block_until_ready((carry, checksum))
            chunk_seconds.append(time.perf_counter() - t0)
        limits[name] = dict(
            compile_seconds=compile_seconds,
            chunk_seconds=chunk_seconds,
            steps_per_second=steps / statistics.median(chunk_seconds[1:]),
        )
    return limits


def default_max_gb() -> float:
    """Memory a point may use: 4 GB (at most a quarter of RAM) on CPU, half an accelerator's."""
    if jax.default_backend() != "cpu":
        stats = jax.devices()[0].memory_stats() or {}
        if "bytes_limit" in stats:
            return stats["bytes_limit"] / 2e9
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):
        ram = 16.0
    return min(4.0, ram / 4)


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def guard(config, num_agents: int, chunk_steps: int, timed_chunks: int, last_sps: float | None,
          args) -> str | None:
    """Why a point should be skipped (estimated memory or run time too large), or None."""
    obs_size = int(np.prod(env_spec(*make_env(config.env)).obs_shape))
    gb = estimated_gb(config, num_agents, obs_size)
    if gb > args.max_gb:
        return f"estimated {gb:.1f} GB > --max-gb {args.max_gb:g}"
    if last_sps:
        batch = config.num_envs * config.num_steps * num_agents
        updates, timed_chunks = chunk_plan(batch, chunk_steps, timed_chunks)
        seconds = updates * batch * (1 + timed_chunks) / last_sps
        if seconds > args.max_point_seconds:
            return (f"estimated {seconds:.0f} s at the previous point's {last_sps:,.0f} steps/s "
                    f"> --max-point-seconds {args.max_point_seconds:g}")
    return None


def run_point(label: str, points: list, skip_reason: str | None, fn) -> dict | None:
    """Runs `fn()` unless skipped, prints one line, appends the result (or the skip) to
    `points`."""
    if not skip_reason:
        try:
            point = fn()
        except SkipPoint as err:
            skip_reason = str(err)
    if skip_reason:
        print(f"  {label}: skipped ({skip_reason})", flush=True)
        points.append(dict(label=label, skipped=skip_reason))
        return None
    point["label"] = label
    points.append(point)
    line = (f"  {label}: compile {point['compile_seconds']:.1f} s, "
            f"{point['steps_per_second']:,.0f} steps/s")
    if "random_rollout_steps_per_second" in point:
        line += (f" ({point['fraction_of_random_rollout']:.1%} of random rollout "
                 f"{point['random_rollout_steps_per_second']:,.0f}, "
                 f"{point['fraction_of_policy_rollout']:.1%} of policy rollout "
                 f"{point['policy_rollout_steps_per_second']:,.0f})")
    print(line, flush=True)
    return point


# ----------------------------------------------------------------------------------------------
# Sweeps
# ----------------------------------------------------------------------------------------------


def sweep_envs(env: str, num_envs_list, num_steps: int, chunk_steps: int, args) -> list[dict]:
    base = ppo_a2c_preset(env, "ppo")
    print(f"{env}: PPO, num_envs sweep at num_steps={num_steps}, "
          f"{base.update_epochs} epochs x {base.num_minibatches} minibatches", flush=True)
    points: list[dict] = []
    last_sps = None
    for num_envs in num_envs_list:
        config = dataclasses.replace(base, num_envs=num_envs, num_steps=num_steps)

        def measure(config=config):
            point, (runner, state) = measure_training(
                config, chunk_steps=chunk_steps, timed_chunks=args.timed_chunks,
                cache_dir=args.cache_dir, max_gb=args.max_gb,
            )
            limits = measure_rollout_limits(runner, state, timed_chunks=args.timed_chunks)
            for name, limit in limits.items():
                point[f"{name}_rollout_steps_per_second"] = limit["steps_per_second"]
                point[f"{name}_rollout_compile_seconds"] = limit["compile_seconds"]
                point[f"{name}_rollout_chunk_seconds"] = limit["chunk_seconds"]
                point[f"fraction_of_{name}_rollout"] = (
                    point["steps_per_second"] / limit["steps_per_second"]
                )
            return point

        skip = guard(config, 1, chunk_steps, args.timed_chunks, last_sps, args)
        point = run_point(f"num_envs={num_envs}", points, skip, measure)
        if point:
            last_sps = point["steps_per_second"]
        gc.collect()
    return points


def sweep_seeds(seeds_list, args) -> list[dict]:
    base = dataclasses.replace(ppo_a2c_preset("CartPole-v1", "ppo"), num_envs=args.seed_envs,
                               num_steps=args.seed_steps)
    print(f"CartPole-v1: PPO, seeds sweep at {base.num_envs} envs x {base.num_steps} steps per "
          f"agent, {base.update_epochs} epochs x {base.num_minibatches} minibatches", flush=True)
    points: list[dict] = []
    last_sps = None
    for num_agents in seeds_list:
        def measure(num_agents=num_agents):
            point, _ = measure_training(
                base, num_agents=num_agents, chunk_steps=args.chunk_steps,
                timed_chunks=args.timed_chunks, cache_dir=args.cache_dir, max_gb=args.max_gb,
            )
            return point

        skip = guard(base, num_agents, args.chunk_steps, args.timed_chunks, last_sps, args)
        point = run_point(f"seeds={num_agents}", points, skip, measure)
        if point:
            last_sps = point["steps_per_second"]
        gc.collect()
    return points


def sweep_devices(args) -> list[dict]:
    """Runs in the child process that was started with the virtual-device XLA flag.

    Both splits share one total batch (`--device-envs` environments x `--seed-steps` steps per
    update): "envs" trains one agent whose environments are split over the devices; "agents"
    trains `--device-agents` agents, each with an equal share of the environments, spread over
    the devices.
    """
    base = dataclasses.replace(ppo_a2c_preset("CartPole-v1", "ppo"), num_steps=args.seed_steps)
    print(f"CartPole-v1: PPO, devices sweep, {args.device_envs} envs x {base.num_steps} steps "
          f"per update in all ({parallel.describe_hardware()})", flush=True)
    points: list[dict] = []
    for split in args.device_splits:
        for num_devices in args.devices:
            num_agents = 1 if split == "envs" else args.device_agents
            config = dataclasses.replace(base, num_envs=args.device_envs // num_agents)

            def measure(config=config, num_agents=num_agents, num_devices=num_devices,
                        split=split):
                point, _ = measure_training(
                    config, num_agents=num_agents, num_devices=num_devices, split=split,
                    chunk_steps=args.chunk_steps, timed_chunks=args.timed_chunks,
                    cache_dir=args.cache_dir, max_gb=args.max_gb,
                )
                return point

            skip = None
            if num_devices > jax.local_device_count():
                skip = f"only {jax.local_device_count()} device(s)"
            elif args.device_envs % num_agents or (
                (args.device_envs if split == "envs" else num_agents) % num_devices
            ):
                skip = (f"--device-envs {args.device_envs} / --device-agents "
                        f"{args.device_agents} do not split evenly over {num_devices} devices")
            point = run_point(f"split={split} devices={num_devices}", points, skip, measure)
            if point is None:
                points[-1].update(split=split, num_devices=num_devices)
            if args.device_child:  # keep what finished if the parent has to stop this process
                pathlib.Path(args.device_child).write_text(json.dumps(dict(
                    points=points, hardware=parallel.describe_hardware())))
            gc.collect()
    return points


def run_device_child(args) -> dict:
    """Runs the device sweep in a fresh interpreter that sees `max(devices)` CPU devices."""
    flags = os.environ.get("XLA_FLAGS", "")
    flags += f" --xla_force_host_platform_device_count={max(args.devices)}"
    env = {**os.environ, "XLA_FLAGS": flags.strip()}
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "devices.json"
        cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), *sys.argv[1:],
               "--device-child", str(out)]
        note = None
        try:
            subprocess.run(cmd, env=env, check=True, timeout=args.device_timeout)
        except subprocess.TimeoutExpired:
            note = f"device sweep stopped after --device-timeout {args.device_timeout:g} s"
        except subprocess.CalledProcessError as err:
            note = f"device sweep failed with exit status {err.returncode}"
        if note:
            print(f"  {note}", flush=True)
        child = json.loads(out.read_text()) if out.exists() else dict(points=[], hardware=None)
        child["note"] = note
        return child


# ----------------------------------------------------------------------------------------------
# Hardware and reports
# ----------------------------------------------------------------------------------------------


def hardware() -> dict:
    dev = jax.devices()[0]
    versions = {}
    for package in ("jax", "jaxlib", "flax", "optax", "gymnax", "numpy"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    cores = host_cores()
    backend = jax.default_backend()
    line = f"{cpu_model()}, {cores} cores"
    if backend != "cpu":
        line += f"; {jax.device_count()} x {dev.device_kind}"
    line += f"; jax {jax.__version__}, Python {platform.python_version()}"
    return dict(
        line=line,
        cpu=cpu_model(),
        cpu_cores=cores,
        backend=backend,
        device_kind=dev.device_kind,
        device_count=jax.device_count(),
        describe=parallel.describe_hardware(),
        python=platform.python_version(),
        versions=versions,
    )


def git_revision() -> str | None:
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
            text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def fmt_sps(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    return f"{x / 1e3:.1f}k" if x >= 1e3 else f"{x:.0f}"


def fmt_compile(point: dict) -> str:
    cache = point["compilation_cache"]
    return f"{point['compile_seconds']:.1f}" + ("" if cache == "off" else f" ({cache})")


def table(header: list[str], align: list[str], points: list[dict], lead, cells) -> list[str]:
    """Markdown table lines: one row per point; a skipped point keeps its `lead(p)` cells and
    says why in the next one."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for p in points:
        row = [*lead(p), f"skipped: {p['skipped']}"] if "skipped" in p else cells(p)
        lines.append("| " + " | ".join(row) + " |" + " |" * (len(header) - len(row)))
    return lines + [""]


def markdown(result: dict) -> str:
    hw = result["hardware"]
    cache = result["compilation_cache"]
    lines = [
        f"Hardware: {hw['line']} ({hw['describe']}). Date: {result['date']}.",
        (f"Command: `{result['command']}`. Compilation cache: {cache['state']}. "
         f"Load average at start / end: {result['load_average_start']} / "
         f"{result['load_average_end']}. Total run time: {result['wall_seconds']:.0f} s."),
        "",
        ("Steps/s: env steps per second over all agents, median of the timed chunks after a "
         "warm-up chunk; compile s: ahead-of-time compile of one training chunk (cold unless "
         "the cache says warm); cores busy: this process's CPU time / wall time over the timed "
         "chunks; load: 1-minute load average of the machine when they started."),
        "",
    ]
    busy_load = lambda p: [f"{p['host_cores_busy']:.2f}", f"{p['load_average_1min']:.1f}"]
    label = lambda p: [p["label"].split("=")[1]]
    for sweep in result["envs_sweeps"]:
        lines += [
            (f"**{sweep['env']}**, PPO, {sweep['num_steps']} steps per env and update, "
             f"{sweep['update_epochs']} epochs x {sweep['num_minibatches']} minibatches, "
             f"hidden {'x'.join(map(str, sweep['hidden_sizes']))}:"),
            "",
            *table(
                ["num_envs", "compile s", "train steps/s", "random rollout steps/s",
                 "policy rollout steps/s", "train / random", "train / policy", "cores busy",
                 "load"],
                ["---:"] * 9, sweep["points"], label,
                lambda p: [
                    str(p["num_envs"]), fmt_compile(p), fmt_sps(p["steps_per_second"]),
                    fmt_sps(p["random_rollout_steps_per_second"]),
                    fmt_sps(p["policy_rollout_steps_per_second"]),
                    f"{p['fraction_of_random_rollout']:.1%}",
                    f"{p['fraction_of_policy_rollout']:.1%}", *busy_load(p),
                ],
            ),
        ]
    if result["seeds_sweep"]:
        first = next((p for p in result["seeds_sweep"] if "skipped" not in p), None)
        per = f"{first['num_envs']} envs x {first['num_steps']} steps" if first else ""
        lines += [
            f"**CartPole-v1 seeds** (independent agents in one program, {per} each):",
            "",
            *table(
                ["seeds", "compile s", "aggregate steps/s", "per-agent steps/s", "cores busy",
                 "load"],
                ["---:"] * 6, result["seeds_sweep"], label,
                lambda p: [
                    str(p["num_agents"]), fmt_compile(p), fmt_sps(p["steps_per_second"]),
                    fmt_sps(p["steps_per_second_per_agent"]), *busy_load(p),
                ],
            ),
        ]
    if result["devices_sweep"]:
        lines += [
            f"**CartPole-v1 devices** ({result['devices_hardware']}):",
            "",
            *table(
                ["split", "devices", "agents x envs", "compile s", "aggregate steps/s",
                 "cores busy", "load"],
                ["---", "---:", "---", "---:", "---:", "---:", "---:"], result["devices_sweep"],
                lambda p: [p["split"], str(p["num_devices"])],
                lambda p: [
                    p["split"], str(p["num_devices"]), f"{p['num_agents']} x {p['num_envs']}",
                    fmt_compile(p), fmt_sps(p["steps_per_second"]), *busy_load(p),
                ],
            ),
        ]
    if result.get("devices_note"):
        lines += [f"Devices sweep: {result['devices_note']}.", ""]
    return "\n".join(lines)


def plot(result: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def log2_ticks(ax, values):
        ax.set_xscale("log", base=2)
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        if values:
            ax.set_xticks(sorted(values), [str(v) for v in sorted(values)])

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    ticks: set[int] = set()
    ax = axes[0]
    for sweep, color in zip(result["envs_sweeps"], ("tab:blue", "tab:red"), strict=False):
        pts = [p for p in sweep["points"] if "skipped" not in p]
        if not pts:
            continue
        x = [p["num_envs"] for p in pts]
        ax.plot(x, [p["steps_per_second"] for p in pts], "o-", color=color,
                label=f"{sweep['env']} PPO training")
        ax.plot(x, [p["random_rollout_steps_per_second"] for p in pts], "x--", color=color,
                alpha=0.6, label=f"{sweep['env']} random-action rollout")
        ax.plot(x, [p["policy_rollout_steps_per_second"] for p in pts], "^:", color=color,
                alpha=0.8, label=f"{sweep['env']} policy rollout")
        ticks.update(x)
    ax.set(yscale="log", xlabel="num_envs", ylabel="env steps / s",
           title="one agent, more environments")
    log2_ticks(ax, ticks)
    if ax.get_legend_handles_labels()[0]:
        bottom, top = ax.get_ylim()
        ax.set_ylim(bottom, top * 30)  # room for the legend above the curves
        ax.legend(fontsize=6.5, ncol=2, loc="upper left")

    ax = axes[1]
    pts = [p for p in result["seeds_sweep"] if "skipped" not in p]
    if pts:
        x = [p["num_agents"] for p in pts]
        ax.plot(x, [p["steps_per_second"] for p in pts], "o-", label="aggregate")
        ax.plot(x, [p["steps_per_second_per_agent"] for p in pts], "s--", label="per agent")
        ax.legend(fontsize=8)
        log2_ticks(ax, x)
    ax.set(yscale="log", xlabel="seeds (agents)", ylabel="env steps / s",
           title="CartPole-v1, independent agents")

    ax = axes[2]
    for split, marker in (("envs", "o-"), ("agents", "s-")):
        pts = [p for p in result["devices_sweep"] if p.get("split") == split and "skipped" not in p]
        if pts:
            ax.plot([p["num_devices"] for p in pts], [p["steps_per_second"] for p in pts], marker,
                    label=f"split={split}")
    ax.set(xlabel="devices", ylabel="aggregate env steps / s",
           title=f"CartPole-v1, devices ({result['hardware']['backend']})")
    log2_ticks(ax, result["devices"])
    ax.set_ylim(bottom=0)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.suptitle(result["hardware"]["line"], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except the full / --quick ones the help text spells out itself."""

    def _get_help_string(self, action):
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def _defaults(name: str) -> str:
    def text(value):
        return ",".join(map(str, value)) if isinstance(value, list) else f"{value:g}"

    return f"(default: {text(FULL[name])}; --quick: {text(QUICK[name])})"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=_HelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small lists and chunks (smoke run)")
    parser.add_argument("--envs", type=int_list,
                        help=f"CartPole num_envs list {_defaults('envs')}")
    parser.add_argument("--num-steps", type=int, default=64, help="CartPole steps per update")
    parser.add_argument("--minatar-env", default="Breakout-MinAtar",
                        help="MinAtar game of the second num_envs sweep; 'none' to skip it")
    parser.add_argument("--minatar-envs", type=int_list,
                        help=f"its num_envs list {_defaults('minatar_envs')}")
    parser.add_argument("--minatar-num-steps", type=int, default=64,
                        help="its steps per update (the preset's 128 halved, to bound memory)")
    parser.add_argument("--seeds", type=int_list, help=f"seed counts {_defaults('seeds')}")
    parser.add_argument("--seed-envs", type=int, default=16, help="envs per agent (seeds sweep)")
    parser.add_argument("--seed-steps", type=int, default=64,
                        help="steps per update (seeds and devices sweeps)")
    parser.add_argument("--devices", type=int_list,
                        help=f"device counts {_defaults('devices')}")
    parser.add_argument("--device-splits", type=lambda s: s.split(","), default="envs,agents",
                        help="'envs' (one agent's environments split) and/or 'agents'")
    parser.add_argument("--device-envs", type=int, default=1024,
                        help="environments in all (both splits) in the devices sweep")
    parser.add_argument("--device-agents", type=int, default=64,
                        help="agents in the 'agents' split (each --device-envs / this many envs)")
    parser.add_argument("--device-timeout", type=float, default=900.0,
                        help="stop the device sweep's child process after this many seconds")
    parser.add_argument("--sweeps", type=lambda s: s.split(","),
                        default="envs,minatar,seeds,devices",
                        help="which sweeps to run")
    parser.add_argument("--chunk-steps", type=int,
                        help="fewest env steps per timed chunk (CartPole, all agents) "
                        + _defaults("chunk_steps"))
    parser.add_argument("--minatar-chunk-steps", type=int,
                        help="the same for the MinAtar sweep " + _defaults("minatar_chunk_steps"))
    parser.add_argument("--timed-chunks", type=int,
                        help="chunks timed after the warm-up one " + _defaults("timed_chunks"))
    parser.add_argument("--max-gb", type=float, default=None,
                        help="skip points whose estimated memory exceeds this (default: 4 GB or "
                        "a quarter of RAM on CPU, half the accelerator's memory otherwise)")
    parser.add_argument("--max-point-seconds", type=float,
                        help="skip points estimated (from the previous point) to run longer "
                        + _defaults("max_point_seconds"))
    parser.add_argument("--compilation-cache", nargs="?", const="", default=None, metavar="DIR",
                        help="turn on JAX's persistent compilation cache (default dir: acjax's)")
    parser.add_argument("--output-dir", default=str(ROOT / "results"))
    parser.add_argument("--tag", default=None,
                        help="file name suffix (default: '' for a full run, '-quick' for --quick)")
    parser.add_argument("--device-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for name in ("envs", "minatar_envs", "seeds", "devices", "chunk_steps", "minatar_chunk_steps",
                 "timed_chunks", "max_point_seconds"):
        if getattr(args, name) is None:
            setattr(args, name, defaults[name])
    if args.tag is None:
        args.tag = "-quick" if args.quick else ""
    if args.timed_chunks < 1:
        parser.error("--timed-chunks must be >= 1")
    unknown = set(args.sweeps) - {"envs", "minatar", "seeds", "devices"}
    if unknown:
        parser.error(f"--sweeps: unknown {sorted(unknown)}; choose from envs,minatar,seeds,devices")
    return args


def setup_cache(args) -> dict:
    """Turns the persistent cache on when asked and says whether it starts cold or warm."""
    if args.compilation_cache is not None:
        from acjax.run.programs import enable_compilation_cache

        enable_compilation_cache(args.compilation_cache or None)
    args.cache_dir = jax.config.jax_compilation_cache_dir or None
    entries = cache_entries(args.cache_dir)
    if entries is None:
        state = "off (cold compiles)"
    else:
        state = f"on at {args.cache_dir}, {'warm' if entries else 'cold'} ({entries} files at start)"
    return dict(dir=args.cache_dir, entries_at_start=entries, state=state)


def main(argv=None) -> None:
    # Importing acjax changes nothing in JAX: apply the CPU settings acjax's command line starts
    # with (XLA's scheduler flag, the straight-line threefry lowering) before JAX's backend starts.
    acjax.cpu.apply()
    args = parse_args(argv)
    cache = setup_cache(args)
    if args.max_gb is None:
        args.max_gb = default_max_gb()
    if args.device_child:
        sweep_devices(args)
        return

    start = time.perf_counter()
    hw = hardware()
    load_start = load_average()
    print(f"hardware: {hw['line']}\n  {hw['describe']}", flush=True)
    print(f"compilation cache: {cache['state']}; load average: {load_start}", flush=True)

    envs_sweeps = []
    sweeps = [("envs", "CartPole-v1", args.envs, args.num_steps, args.chunk_steps)]
    if args.minatar_env.lower() != "none":
        sweeps.append(("minatar", args.minatar_env, args.minatar_envs, args.minatar_num_steps,
                       args.minatar_chunk_steps))
    for name, env, num_envs_list, num_steps, chunk_steps in sweeps:
        if name not in args.sweeps or not num_envs_list:
            continue
        base = ppo_a2c_preset(env, "ppo")
        envs_sweeps.append(dict(
            env=env, num_steps=num_steps, update_epochs=base.update_epochs,
            num_minibatches=base.num_minibatches, hidden_sizes=list(base.network.hidden_sizes),
            chunk_steps=chunk_steps,
            points=sweep_envs(env, num_envs_list, num_steps, chunk_steps, args),
        ))
    seeds_points = sweep_seeds(args.seeds, args) if "seeds" in args.sweeps else []
    devices_points, devices_hw, devices_note = [], None, None
    if "devices" in args.sweeps and args.devices:
        child = run_device_child(args)
        devices_points, devices_hw, devices_note = child["points"], child["hardware"], child["note"]

    result = dict(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        command=shlex.join(["python", "benchmarks/throughput.py", *sys.argv[1:]]),
        git=git_revision(),
        hardware=hw,
        compilation_cache=cache,
        load_average_start=load_start,
        load_average_end=load_average(),
        wall_seconds=time.perf_counter() - start,
        timed_chunks=args.timed_chunks,
        devices=args.devices,
        devices_hardware=devices_hw,
        devices_note=devices_note,
        envs_sweeps=envs_sweeps,
        seeds_sweep=seeds_points,
        devices_sweep=devices_points,
        notes=[
            ("steps_per_second: env steps over all agents per second, median over the timed "
             "chunks (the first chunk is a warm-up and not timed); compile_seconds: "
             "ahead-of-time compile of the chunk; init_seconds: first call of init (includes "
             "its compile)"),
            ("random/policy rollout: the same environments stepped for one chunk's worth of "
             "steps with random actions, or with acjax.agents.rollout.rollout and the trained "
             "policy"),
        ],
    )
    out_dir = pathlib.Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"throughput-{hw['backend']}{args.tag}"
    table = markdown(result)
    (out_dir / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out_dir / f"{stem}.md").write_text(table + "\n")
    plot(result, out_dir / f"{stem}.png")
    print("\n" + table)
    print(f"wrote {out_dir / stem}.{{json,md,png}} in {result['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
