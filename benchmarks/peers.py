"""acjax beside peer libraries (rejax, Stable-Baselines3, sbx) on the same machine.

Every measurement runs in its own child process (`benchmarks/peers/child.py`), frameworks
alternating (acjax, peer, acjax, peer, ...) for `--repeats` rounds, so both see the same machine
state; the report gives medians over the rounds and acjax / peer ratios. A child reports its
import, setup, compile and training times, its time to result (from its first statement to the
trained result), steady-state steps/s (a second call of the compiled program with other seeds)
and the greedy return of its final policy; the parent adds the process's wall time. A last
child measures the limits of the PPO workloads: random-action and policy-only rollouts at each
workload's number of environments, the peak matmul rate and the FLOPs of one training update
(off-policy workloads, e.g. sac-pendulum, have no limits measured).

Peers live in their own interpreter (`--peer-python`; sbx pulls tfp-nightly and rejax pulls
distrax, so a separate virtualenv is the easy way); frameworks that do not import there are
skipped with the command that installs them.

    python benchmarks/peers.py                       # full run (hours on a 2-core CPU)
    python benchmarks/peers.py --quick --peer-python /path/to/venv/bin/python   # smoke run
    python benchmarks/peers.py --workloads ppo-cartpole,ppo-cartpole-zoo --repeats 5
    python benchmarks/peers.py --workloads sac-pendulum --tag -sac   # SAC only: peers-cpu-sac.*

Writes benchmarks/results/peers-<backend>.{json,md,png} (`--quick`: peers-<backend>-quick.*;
`--tag` sets the suffix, so a run of some workloads need not overwrite the full run's files).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import pathlib
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from _hardware import cores, cpu_model, load_average

ROOT = pathlib.Path(__file__).resolve().parent
CHILD = ROOT / "peers" / "child.py"
RESULT_PREFIX = "PEERS-RESULT "  # the same as benchmarks/peers/_common.py's
SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"

# ----------------------------------------------------------------------------------------------
# Configurations (plain dicts: every runner translates them into its framework's terms)
# ----------------------------------------------------------------------------------------------

PUREJAXRL_CARTPOLE = dict(
    num_envs=4, num_steps=128, update_epochs=4, num_minibatches=4, learning_rate=2.5e-4,
    anneal_lr=True, anneal_clip=False, gamma=0.99, gae_lambda=0.95, clip_eps=0.2, ent_coef=0.01,
    vf_coef=0.5, max_grad_norm=0.5, adam_eps=1e-5, hidden_sizes=[64, 64], activation="tanh",
    clip_value=True,
)
"""PureJaxRL's CartPole-v1 PPO: 4 envs x 128 steps, 4 epochs x 4 minibatches, separate 64x64
tanh actor and critic, lr 2.5e-4 annealed linearly, global-norm clipping 0.5, Adam eps 1e-5,
value loss clipped around the rollout's values with clip_eps (PureJaxRL and rejax both do)."""

WIDE_CARTPOLE = {**PUREJAXRL_CARTPOLE, "num_envs": 2048, "num_steps": 64}
"""PureJaxRL's hyperparameters at 2048 envs x 64 steps (131,072 steps per update)."""

ZOO_CARTPOLE = dict(
    num_envs=8, num_steps=32, update_epochs=20, num_minibatches=1, learning_rate=1e-3,
    anneal_lr=True, anneal_clip=True, gamma=0.98, gae_lambda=0.8, clip_eps=0.2, ent_coef=0.0,
    vf_coef=0.5, max_grad_norm=0.5, adam_eps=1e-5, hidden_sizes=[64, 64], activation="tanh",
)
"""rl-baselines3-zoo's CartPole-v1 PPO (hyperparams/ppo.yml): n_envs 8, n_steps 32,
batch_size 256 (= one minibatch of the 8 x 32 rollout), n_epochs 20, gae_lambda 0.8,
gamma 0.98, ent_coef 0.0, learning_rate lin_1e-3, clip_range lin_0.2, 1e5 timesteps; the rest
SB3's defaults (vf_coef 0.5, max_grad_norm 0.5, Adam eps 1e-5, 64x64 tanh pi and vf)."""

ZOO_PENDULUM_SAC = dict(
    num_envs=1, train_freq=1, gradient_steps=1, learning_rate=1e-3, buffer_size=1_000_000,
    learning_starts=100, batch_size=256, tau=0.005, gamma=0.99, ent_coef="auto",
    target_entropy="auto", hidden_sizes=[256, 256], activation="relu",
)
"""rl-baselines3-zoo's Pendulum-v1 SAC (hyperparams/sac.yml): n_timesteps 20000, learning_rate
1e-3; the rest SB3's (and sbx's) SAC defaults: one env, one gradient step per env step, buffer
1e6, learning_starts 100, batch 256, tau 0.005, gamma 0.99, ent_coef "auto" (alpha starts at 1,
tuned with the same learning rate towards target_entropy -action_dim), 256x256 ReLU actor and
twin critics."""

REJAX_PENDULUM_SAC = dict(
    num_envs=1, num_epochs=1, buffer_size=10_000, fill_buffer=256, batch_size=256,
    learning_rate=0.01, gamma=0.99, polyak=0.98, normalize_observations=True,
    activation="swish", hidden_sizes=[64, 64], max_grad_norm=None,
)
"""rejax's own Pendulum-v1 SAC (configs/gymnax/pendulum.yaml of github.com/keraJLi/rejax, not
shipped in the rejax 0.1.3 wheel): 1 env, num_epochs 1 (one gradient step per env step),
buffer 10,000, fill_buffer 256, batch 256, learning_rate 0.01 (actor, critics and alpha),
gamma 0.99, polyak 0.98, normalize_observations, swish; total_timesteps 10,000 there (20,000
here). The yaml leaves the layers at rejax SAC's default 64x64 and max_grad_norm at rejax's
default (no clipping)."""

SAC_PENDULUM = dict(
    env="Pendulum-v1",
    step_multiple=8,
    acjax_argv={
        # acjax's Pendulum-v1 preset: `python -m acjax.sac --env Pendulum-v1`.
        "acjax": ["--env", "Pendulum-v1"],
        # The same algorithm at the SB3 / sbx (rl-zoo) hyperparameters above.
        "acjax-ref": [
            "--env", "Pendulum-v1", "--num-envs", "1", "--num-steps", "1",
            "--gradient-steps", "1", "--actor-lr", "1e-3", "--critic-lr", "1e-3",
            "--alpha-lr", "1e-3", "--init-alpha", "1.0", "--learning-starts", "100",
            "--batch-size", "256", "--buffer-size", "1000000", "--tau", "0.005",
            "--gamma", "0.99", "--network.hidden-sizes", "256", "256",
            "--network.activation", "relu",
        ],
    },
    rejax=REJAX_PENDULUM_SAC,
    zoo=ZOO_PENDULUM_SAC,
)
"""SAC on Pendulum-v1; every framework at its own settings (the runners read theirs):
`acjax_argv[framework]` are the command-line flags acjax's runner builds its configuration from
(as `python -m acjax.sac` does; `--total-timesteps` is added), `rejax` rejax's and `zoo` SB3's
and sbx's. step_multiple: the env steps per iteration of every runner divide it (acjax's preset
collects 8 per iteration); the workload's step count is rounded down to a multiple."""

CONFIGS = {"purejaxrl": PUREJAXRL_CARTPOLE, "wide": WIDE_CARTPOLE, "zoo": ZOO_CARTPOLE,
           "sac-pendulum": SAC_PENDULUM}


# ----------------------------------------------------------------------------------------------
# Frameworks and workloads
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Framework:
    interpreter: str
    """"acjax" (this interpreter) or "peer" (`--peer-python`)."""
    modules: tuple[str, ...]
    """What must import for it to run."""
    package: str
    """Its name in the "not installed" message."""
    install: str
    """The command that installs it."""
    cache: str | None = None
    """acjax's persistent compilation cache: "cold" (fresh directory) or "warm" (reused)."""
    exec_threads: int | str | None = None
    """Threads of JAX's CPU execution pool (acjax.cpu.backend.start_cpu_backend) set up before the
    runner imports anything: a number, "auto" (what acjax's command line would choose for a
    single-device run), or None (JAX's default, one per core)."""


FRAMEWORKS = {
    "acjax": Framework("acjax", ("acjax", "gymnax"), "acjax", "pip install -e .",
                       exec_threads="auto"),
    "acjax-vmap": Framework("acjax", ("acjax", "gymnax"), "acjax", "pip install -e ."),
    "acjax-cache-cold": Framework("acjax", ("acjax", "gymnax"), "acjax", "pip install -e .",
                                  cache="cold", exec_threads="auto"),
    "acjax-cache-warm": Framework("acjax", ("acjax", "gymnax"), "acjax", "pip install -e .",
                                  cache="warm", exec_threads="auto"),
    "acjax-all-threads": Framework("acjax", ("acjax", "gymnax"), "acjax", "pip install -e ."),
    "acjax-1device": Framework("acjax", ("acjax", "gymnax"), "acjax", "pip install -e .",
                               exec_threads="auto"),
    "acjax-ref": Framework("acjax", ("acjax", "gymnax"), "acjax", "pip install -e .",
                           exec_threads="auto"),
    "rejax": Framework("peer", ("rejax", "gymnax"), "rejax", "pip install rejax==0.1.3"),
    "rejax-1thread": Framework("peer", ("rejax", "gymnax"), "rejax",
                               "pip install rejax==0.1.3", exec_threads=1),
    "sb3": Framework(
        "peer", ("stable_baselines3", "torch", "gymnasium"), "stable-baselines3",
        "pip install torch --index-url https://download.pytorch.org/whl/cpu && "
        "pip install stable-baselines3",
    ),
    "sbx": Framework("peer", ("sbx", "stable_baselines3", "gymnasium"), "sbx-rl",
                     "pip install sbx-rl"),
}


@dataclasses.dataclass(frozen=True)
class Workload:
    description: str
    runners: dict[str, str]
    """framework -> "module:function" in benchmarks/peers/; the order is the run order."""
    config: str
    """Key into CONFIGS (also the configuration whose update FLOPs the roofline uses)."""
    total_timesteps: int
    """Per seed; rounded down to whole updates (num_envs x num_steps), the same for all."""
    quick_timesteps: int
    num_seeds: int = 1
    reference: str = "acjax"
    solve: bool = False
    """Record the time to solve (training return >= SOLVE_THRESHOLD)."""
    offpolicy: bool = False
    """SAC and the like: no rollout limits or update FLOPs (those child measurements are
    PPO's), per-framework settings in the config (see SAC_PENDULUM)."""

    @property
    def num_envs(self) -> int:
        """Environments stepped in all (every seed's)."""
        return CONFIGS[self.config].get("num_envs", 1) * self.num_seeds


SOLVE_THRESHOLD, SOLVE_WINDOW = 475.0, 10
SOLVE_CHUNK_UPDATES = 10  # acjax's zoo run checks its training return every 10 updates

_SEEDS_RUNNERS = {
    "acjax": "acjax_ppo:train_cli",
    "rejax": "rejax_ppo:train",
    "acjax-vmap": "acjax_ppo:train_vmap",
}

WORKLOADS: dict[str, Workload] = {
    "ppo-cartpole": Workload(
        "PPO on CartPole-v1 at PureJaxRL's configuration (4 envs x 128 steps, 4 epochs x 4 "
        "minibatches, 64x64 tanh), one seed; acjax-cache-cold / -warm: acjax "
        "with the persistent compilation cache and its saved programs "
        "(acjax.run.programs.compile_train) in a fresh directory, then again with both filled; acjax runs its small SGD steps on a one-thread execution pool as its command "
        "line does, acjax-all-threads on JAX's default pool (one thread per core), "
        "rejax-1thread is rejax started the way acjax starts",
        runners={
            "acjax": "acjax_ppo:train_single",
            "rejax": "rejax_ppo:train",
            "acjax-all-threads": "acjax_ppo:train_single",
            "rejax-1thread": "rejax_ppo:train",
            "acjax-cache-cold": "acjax_ppo:train_single",
            "acjax-cache-warm": "acjax_ppo:train_single",
        },
        config="purejaxrl", total_timesteps=500_000, quick_timesteps=20_000,
    ),
    "ppo-cartpole-seeds16": Workload(
        "the same, 16 seeds in one program: acjax as its command line trains them "
        "(XLA CPU devices, acjax.run.parallel runner), acjax-vmap and rejax as jit(vmap(train))",
        runners=_SEEDS_RUNNERS, config="purejaxrl", total_timesteps=500_000,
        quick_timesteps=8_192, num_seeds=16,
    ),
    "ppo-cartpole-seeds64": Workload(
        "the same, 64 seeds in one program",
        runners=_SEEDS_RUNNERS, config="purejaxrl", total_timesteps=500_000,
        quick_timesteps=8_192, num_seeds=64,
    ),
    "ppo-cartpole-wide": Workload(
        "PureJaxRL's hyperparameters at 2048 envs x 64 steps (131,072 steps per update), "
        "4 epochs x 4 minibatches, one seed; acjax as its command line trains it (its "
        "environments split over one XLA CPU device per core, acjax.cpu.sizing."
        "data_parallel_devices), acjax-1device as jit(train) on one device",
        runners={"acjax": "acjax_ppo:train_cli", "rejax": "rejax_ppo:train",
                 "acjax-1device": "acjax_ppo:train_single"},
        config="wide", total_timesteps=5_000_000, quick_timesteps=131_072,
    ),
    "ppo-cartpole-wide-seeds8": Workload(
        "the wide configuration, 8 seeds in one program (a single seed's final return varies "
        "widely at this budget of 38 updates, 608 SGD steps): returns over seeds, aggregate "
        "steps/s",
        runners=_SEEDS_RUNNERS, config="wide", total_timesteps=5_000_000,
        quick_timesteps=131_072, num_seeds=8,
    ),
    "ppo-cartpole-zoo": Workload(
        "rl-baselines3-zoo's CartPole-v1 PPO (8 envs x 32 steps, batch 256, 20 epochs, "
        "gamma 0.98, gae_lambda 0.8, ent 0, lin_1e-3, lin_0.2); SB3 (PyTorch, "
        "CPU) and sbx on gymnasium's CartPole-v1, acjax on gymnax's",
        runners={
            "acjax": "acjax_ppo:train_zoo",
            "sb3": "sb3_ppo:train_sb3",
            "sbx": "sb3_ppo:train_sbx",
        },
        config="zoo", total_timesteps=100_000, quick_timesteps=20_000, solve=True,
    ),
    # ------------------------------------------------------------------------------------------
    # Off-policy workloads (offpolicy=True): per-framework settings in the config, no limits.
    # ------------------------------------------------------------------------------------------
    "sac-pendulum": Workload(
        "SAC on Pendulum-v1, one seed, every framework at its own tuned settings: acjax at its "
        "preset (`python -m acjax.sac --env Pendulum-v1`: 8 envs, 4 gradient steps per "
        "iteration, 64x64 ReLU, Adam 1e-3, batch 256, buffer 20k, learning_starts 1000), "
        "acjax-ref at SB3 / sbx's (rl-zoo: 1 env, 1 gradient step per env step, 256x256 ReLU, "
        "Adam 1e-3, batch 256, learning_starts 100), rejax at its own Pendulum config (1 env, "
        "1 gradient step per env step, 64x64 swish, lr 0.01, observation normalisation); "
        "acjax and rejax on gymnax's Pendulum-v1, SB3 (PyTorch, CPU) and sbx on gymnasium's; "
        "autotuned alpha everywhere",
        runners={
            "acjax": "acjax_sac:train_single",
            "rejax": "rejax_sac:train",
            "acjax-ref": "acjax_sac:train_single",
            "sbx": "sb3_sac:train_sbx",
            "sb3": "sb3_sac:train_sb3",
        },
        config="sac-pendulum", total_timesteps=20_000, quick_timesteps=2_000, offpolicy=True,
    ),
}


def steps_of(workload: Workload, args) -> int:
    """Env steps per seed, rounded down to whole updates (at least one)."""
    cfg = CONFIGS[workload.config]
    if workload.offpolicy:
        steps = workload.quick_timesteps if args.quick else workload.total_timesteps
        return max(1, steps // cfg["step_multiple"]) * cfg["step_multiple"]
    batch = cfg["num_envs"] * cfg["num_steps"]
    if workload.config == "wide" and args.wide_steps is not None:
        steps = args.wide_steps
    elif workload.num_seeds > 1 and args.seeds_steps is not None:
        steps = args.seeds_steps
    else:
        steps = workload.quick_timesteps if args.quick else workload.total_timesteps
    return max(1, steps // batch) * batch


def exec_threads_of(framework: Framework, workload: Workload, name: str = "") -> int | None:
    """The execution-pool size a child starts JAX with (None: JAX's default)."""
    if framework.exec_threads != "auto":
        return framework.exec_threads
    from acjax.cpu.sizing import SMALL_STEP_FLOPS

    if workload.offpolicy:
        # The command line's rule (acjax.cpu.host.configure_threads): one thread for a
        # single-device run whose SGD step is small, estimated from the configuration the
        # runner's own flags give (parsed as `python -m acjax.sac` parses them).
        from acjax.cpu.sizing import offpolicy_step_flops
        from acjax.run.flags import parse_args
        from acjax.sac import SACConfig, sac_preset

        argv = CONFIGS[workload.config]["acjax_argv"].get(name)
        flops = None
        if argv is not None:
            config, _ = parse_args(SACConfig, sac_preset, list(argv), "acjax SAC (peers)")
            flops = offpolicy_step_flops(config)
        if workload.num_seeds > 1 or flops is None or flops > SMALL_STEP_FLOPS:
            return None
        return 1
    from acjax.cpu.sizing import step_flops

    cfg = CONFIGS[workload.config]
    samples = cfg["num_envs"] * cfg["num_steps"] // cfg["num_minibatches"]
    if workload.num_seeds > 1 or step_flops(samples, cfg["hidden_sizes"]) > SMALL_STEP_FLOPS:
        return None
    return 1


# ----------------------------------------------------------------------------------------------
# Child processes
# ----------------------------------------------------------------------------------------------


def child_env() -> dict[str, str]:
    """This process's environment for a child: XLA's concurrency-optimised CPU scheduler off
    (a vmapped-seed run was seen to stall without it), no host device count (a runner that
    wants one sets it itself) and no persistent compilation cache unless a runner turns it on."""
    env = dict(os.environ)
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", env.get("XLA_FLAGS", ""))
    flags = re.sub(r"--xla_cpu_enable_concurrency_optimized_scheduler=\S+", "", flags)
    env["XLA_FLAGS"] = " ".join([*flags.split(), SCHEDULER_FLAG])
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_child(python: str, spec: dict, timeout: float) -> dict:
    """Runs one child; returns its result plus `process_wall_seconds`, or an `error` dict."""
    cmd = [python, str(CHILD), json.dumps(spec)]
    load = load_average()
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=child_env(), capture_output=True, text=True,
                              timeout=timeout, cwd=ROOT.parent, check=False)
    except subprocess.TimeoutExpired as err:
        tail = (err.stderr or b"")[-2000:]
        tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
        return dict(framework=spec["framework"], workload=spec["workload"],
                    error=f"timed out after {timeout:g} s", stderr_tail=tail,
                    process_wall_seconds=time.perf_counter() - t)
    wall = time.perf_counter() - t
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if proc.returncode or not lines:
        return dict(framework=spec["framework"], workload=spec["workload"],
                    error=f"exit status {proc.returncode}" + ("" if lines else ", no result"),
                    stderr_tail=proc.stderr[-3000:], process_wall_seconds=wall)
    result = json.loads(lines[-1][len(RESULT_PREFIX):])
    result["process_wall_seconds"] = wall
    result["load_average_1min_before"] = load[0] if load else None
    return result


def probe(python: str, frameworks: list[str], timeout: float) -> dict:
    spec = dict(runner="probe:probe", framework="probe", workload="probe",
                frameworks={f: list(FRAMEWORKS[f].modules) for f in frameworks})
    result = run_child(python, spec, timeout)
    if "error" in result:
        result["available"] = {f: False for f in frameworks}
    return result


# ----------------------------------------------------------------------------------------------
# Statistics
# ----------------------------------------------------------------------------------------------

MEDIAN_FIELDS = (
    "import_seconds", "setup_seconds", "compile_seconds", "train_seconds",
    "time_to_result_seconds", "steady_seconds", "steady_steps_per_second", "final_return",
    "final_return_min", "process_wall_seconds", "final_train_return",
)


def median_of(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def medians(runs: list[dict], solve: bool) -> dict:
    ok = [r for r in runs if "error" not in r]
    out = dict(runs=len(runs), failed=len(runs) - len(ok))
    if not ok:
        return out
    for name in MEDIAN_FIELDS:
        out[name] = median_of(r.get(name) for r in ok)
    for name in ("env_steps", "aggregate_env_steps", "num_seeds", "num_devices", "layout"):
        out[name] = ok[0].get(name)
    if solve:
        # A run that never solved counts as slower than every run that did.
        times = sorted(math.inf if r.get("time_to_solve_seconds") is None
                       else r["time_to_solve_seconds"] for r in ok)
        middle = statistics.median(times)
        out["time_to_solve_seconds"] = None if math.isinf(middle) else middle
        out["solved_runs"] = sum(r.get("time_to_solve_seconds") is not None for r in ok)
        out["solve_env_steps"] = median_of(r.get("solve_env_steps") for r in ok)
    return out


def ratio(a, b) -> float | None:
    return a / b if a is not None and b not in (None, 0) else None


def workload_ratios(workload: Workload, meds: dict) -> dict:
    """acjax (the reference) over each other framework: steady steps/s (> 1: acjax faster),
    time to result and time to solve (< 1: acjax faster)."""
    ref = meds.get(workload.reference, {})
    out = {}
    for fw, m in meds.items():
        if fw == workload.reference:
            continue
        out[fw] = dict(
            steady_steps_per_second=ratio(ref.get("steady_steps_per_second"),
                                          m.get("steady_steps_per_second")),
            time_to_result=ratio(ref.get("time_to_result_seconds"),
                                 m.get("time_to_result_seconds")),
        )
        if workload.solve:
            out[fw]["time_to_solve"] = ratio(ref.get("time_to_solve_seconds"),
                                             m.get("time_to_solve_seconds"))
    return out


def limit_figures(workload: Workload, meds: dict, limits: dict | None) -> dict | None:
    """Training against the rollout limit at the workload's env count and the roofline."""
    if workload.offpolicy or not limits or "error" in limits:
        return None
    rollout = limits["rollout"].get(str(workload.num_envs))
    flops = limits["update_flops"].get(workload.config)
    peak = limits["matmul"]["gflops_per_second"] * 1e9
    out = dict(num_envs=workload.num_envs, peak_matmul_gflops_per_second=peak / 1e9)
    if rollout:
        out["random_rollout_steps_per_second"] = rollout["random_steps_per_second"]
        out["policy_rollout_steps_per_second"] = rollout["policy_steps_per_second"]
    if flops:
        out["flops_per_step"] = flops["jaxpr_flops_per_step"]
        out["xla_cost_analysis_flops_per_step"] = flops["xla_flops_per_step"]
    frameworks = {}
    for fw, m in meds.items():
        sps = m.get("steady_steps_per_second")
        if sps is None:
            continue
        f = {}
        if rollout:
            f["fraction_of_random_rollout"] = sps / rollout["random_steps_per_second"]
            f["fraction_of_policy_rollout"] = sps / rollout["policy_steps_per_second"]
        if flops:
            f["achieved_gflops_per_second"] = flops["jaxpr_flops_per_step"] * sps / 1e9
            f["fraction_of_peak"] = flops["jaxpr_flops_per_step"] * sps / peak
            f["achieved_gflops_per_second_xla_count"] = flops["xla_flops_per_step"] * sps / 1e9
        frameworks[fw] = f
    out["frameworks"] = frameworks
    return out


def summary_ratios(result: dict) -> list[tuple[str, float | None]]:
    """The ratios the project follows, as (label, value)."""
    w = result["workloads"]

    def med(name, fw, field):
        return w.get(name, {}).get("medians", {}).get(fw, {}).get(field)

    def lim(name, fw, field):
        figs = (w.get(name, {}).get("limits") or {}).get("frameworks", {})
        return figs.get(fw, {}).get(field)

    sps, ttr, tts = "steady_steps_per_second", "time_to_result_seconds", "time_to_solve_seconds"
    rows = [
        ("ppo-cartpole steady steps/s acjax / rejax",
         ratio(med("ppo-cartpole", "acjax", sps), med("ppo-cartpole", "rejax", sps))),
        ("ppo-cartpole time to result acjax / rejax",
         ratio(med("ppo-cartpole", "acjax", ttr), med("ppo-cartpole", "rejax", ttr))),
        ("ppo-cartpole time to result acjax-cache-cold / rejax",
         ratio(med("ppo-cartpole", "acjax-cache-cold", ttr), med("ppo-cartpole", "rejax", ttr))),
        ("ppo-cartpole time to result acjax-cache-warm / rejax",
         ratio(med("ppo-cartpole", "acjax-cache-warm", ttr), med("ppo-cartpole", "rejax", ttr))),
        ("ppo-cartpole steady steps/s acjax / rejax-1thread",
         ratio(med("ppo-cartpole", "acjax", sps), med("ppo-cartpole", "rejax-1thread", sps))),
        ("ppo-cartpole steady steps/s acjax / acjax-all-threads",
         ratio(med("ppo-cartpole", "acjax", sps), med("ppo-cartpole", "acjax-all-threads", sps))),
    ]
    for name in ("ppo-cartpole-seeds16", "ppo-cartpole-seeds64", "ppo-cartpole-wide-seeds8"):
        for fw in ("acjax", "acjax-vmap"):
            rows.append((f"{name.removeprefix('ppo-cartpole-')} aggregate steps/s {fw} / rejax",
                         ratio(med(name, fw, sps), med(name, "rejax", sps))))
    rows += [
        ("wide steady steps/s acjax / rejax",
         ratio(med("ppo-cartpole-wide", "acjax", sps), med("ppo-cartpole-wide", "rejax", sps))),
        ("wide steady steps/s acjax-1device / rejax",
         ratio(med("ppo-cartpole-wide", "acjax-1device", sps),
               med("ppo-cartpole-wide", "rejax", sps))),
        ("wide acjax / random-action rollout limit",
         lim("ppo-cartpole-wide", "acjax", "fraction_of_random_rollout")),
        ("wide acjax / policy rollout limit",
         lim("ppo-cartpole-wide", "acjax", "fraction_of_policy_rollout")),
        ("wide acjax fraction of peak matmul FLOP/s",
         lim("ppo-cartpole-wide", "acjax", "fraction_of_peak")),
        ("wide rejax fraction of peak matmul FLOP/s (acjax's FLOP/step)",
         lim("ppo-cartpole-wide", "rejax", "fraction_of_peak")),
    ]
    for peer in ("sb3", "sbx"):
        rows += [
            (f"zoo steps/s acjax / {peer}",
             ratio(med("ppo-cartpole-zoo", "acjax", sps), med("ppo-cartpole-zoo", peer, sps))),
            (f"zoo time to solve acjax / {peer}",
             ratio(med("ppo-cartpole-zoo", "acjax", tts), med("ppo-cartpole-zoo", peer, tts))),
        ]
    sac = "sac-pendulum"
    for fw, peer in (("acjax", "rejax"), ("acjax", "sbx"), ("acjax", "sb3"),
                     ("acjax-ref", "sbx"), ("acjax-ref", "sb3"), ("acjax", "acjax-ref")):
        rows += [
            (f"{sac} time to result {fw} / {peer}",
             ratio(med(sac, fw, ttr), med(sac, peer, ttr))),
            (f"{sac} steady steps/s {fw} / {peer}",
             ratio(med(sac, fw, sps), med(sac, peer, sps))),
        ]
    return rows


# ----------------------------------------------------------------------------------------------
# Formatting
# ----------------------------------------------------------------------------------------------


def fmt_sps(x) -> str:
    if x is None:
        return "-"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    return f"{x / 1e3:.1f}k" if x >= 1e3 else f"{x:.0f}"


def fmt_s(x) -> str:
    return "-" if x is None else (f"{x:.1f}" if x >= 10 else f"{x:.2f}")


def fmt_ratio(x) -> str:
    return "-" if x is None else f"{x:.2f}x"


def fmt_pct(x: float) -> str:
    return f"{x:.2%}" if x < 0.01 else f"{x:.1%}"


def fmt_return(m: dict) -> str:
    if m.get("final_return") is None:
        return "-"
    text = f"{m['final_return']:.1f}"
    if (m.get("num_seeds") or 1) > 1 and m.get("final_return_min") is not None:
        text += f" (min {m['final_return_min']:.1f})"
    return text


def live_line(label: str, r: dict, solve: bool) -> str:
    if "error" in r:
        tail = " | ".join(r.get("stderr_tail", "").strip().splitlines()[-3:])
        return f"{label} FAILED ({r['error']}): {tail}"
    parts = [
        (f"ttr {fmt_s(r['time_to_result_seconds'])} s = import {fmt_s(r['import_seconds'])}"
         f" + setup {fmt_s(r['setup_seconds'])} + compile {fmt_s(r['compile_seconds'])}"
         f" + train {fmt_s(r['train_seconds'])}"),
        f"steady {fmt_sps(r.get('steady_steps_per_second'))} steps/s",
        f"return {fmt_return(r)}",
    ]
    if solve and r.get("time_to_solve_seconds") is not None:
        parts.append(f"solved at {fmt_s(r['time_to_solve_seconds'])} s "
                     f"({r['solve_env_steps']:,} steps)")
    elif solve:
        parts.append("not solved")
    if r.get("layout"):
        parts.append(r["layout"])
    parts.append(f"wall {fmt_s(r['process_wall_seconds'])} s")
    if r.get("load_average_1min_before") is not None:
        parts.append(f"load {r['load_average_1min_before']:.1f}")
    return f"{label} " + " | ".join(parts)


def markdown(result: dict) -> str:
    hw = result["hardware"]
    lines = [
        f"Hardware: {hw['line']}. Date: {result['date']}.",
        (f"Command: `{result['command']}`. Repeats: {result['repeats']} (medians shown). "
         f"Load average at start / end: {result['load_average_start']} / "
         f"{result['load_average_end']}. Total run time: {result['wall_seconds']:.0f} s."),
        "",
        ("Every number comes from its own child process; frameworks alternate within each "
         "round. Time to result: from the child's first statement to the trained result "
         "(import + setup + compile + train). Steady steps/s: a second call of the compiled "
         "program with other seeds (SB3 / sbx: steps / learn() time), over all seeds. Final "
         "return: greedy, mean over the evaluation episodes (several seeds: median, and min, "
         "over seeds). Ratios are acjax / that framework: steps/s above 1 and times below 1 "
         "favour acjax."),
        "",
    ]
    seen_notes: set[str] = set()
    for name, w in result["workloads"].items():
        meds, ratios = w["medians"], w["ratios"]
        solve = w["solve"]
        header = ["framework", "time to result s", "import s", "compile s", "steady steps/s",
                  "final return", "acjax/this steps/s", "acjax/this time to result"]
        if solve:
            header += ["time to solve s", "acjax/this time to solve"]
        lines += [f"**{name}**: {w['description']}; {w['env_steps']:,} env steps per seed.", ""]
        lines += ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
        for fw, m in meds.items():
            if "time_to_result_seconds" not in m:
                lines.append(f"| {fw} | failed ({m['failed']} of {m['runs']} runs) |"
                             + " |" * (len(header) - 2))
                continue
            r = ratios.get(fw, {})
            row = [fw, fmt_s(m["time_to_result_seconds"]), fmt_s(m["import_seconds"]),
                   fmt_s(m["compile_seconds"]), fmt_sps(m["steady_steps_per_second"]),
                   fmt_return(m), fmt_ratio(r.get("steady_steps_per_second")),
                   fmt_ratio(r.get("time_to_result"))]
            if solve:
                tts = m.get("time_to_solve_seconds")
                row += [(f"{fmt_s(tts)} ({m.get('solved_runs', 0)}/{m['runs'] - m['failed']} "
                        "solved)"), fmt_ratio(r.get("time_to_solve"))]
            if fw == w["reference"]:
                row[6] = row[7] = "1"
                if solve:
                    row[9] = "1"
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
        lim = w.get("limits")
        if w.get("offpolicy"):
            lines += [("Limits: not measured for off-policy workloads (the rollout-limit and "
                       "update-FLOP measurements are PPO's)."), ""]
        elif lim:
            text = [f"Limits at {lim['num_envs']} envs:"]
            if "random_rollout_steps_per_second" in lim:
                text.append(
                    f"random-action rollout {fmt_sps(lim['random_rollout_steps_per_second'])}, "
                    f"policy rollout {fmt_sps(lim['policy_rollout_steps_per_second'])} steps/s;"
                )
            if "flops_per_step" in lim:
                text.append(
                    f"one update costs {lim['flops_per_step'] / 1e3:.0f}k FLOP per env step "
                    f"(XLA's cost analysis: {lim['xla_cost_analysis_flops_per_step'] / 1e3:.0f}k,"
                    f" loop bodies counted once); peak matmul "
                    f"{lim['peak_matmul_gflops_per_second']:.1f} GFLOP/s."
                )
            for fw, f in lim["frameworks"].items():
                bits = []
                if "fraction_of_random_rollout" in f:
                    bits.append(f"{fmt_pct(f['fraction_of_random_rollout'])} of the random and "
                                f"{fmt_pct(f['fraction_of_policy_rollout'])} of the policy "
                                "rollout")
                if "achieved_gflops_per_second" in f:
                    bits.append(f"{f['achieved_gflops_per_second']:.2f} GFLOP/s = "
                                f"{fmt_pct(f['fraction_of_peak'])} of peak")
                if bits:
                    text.append(f"{fw}: {', '.join(bits)};")
            lines += [" ".join(text).rstrip(";") + ".", ""]
        notes = sorted({n for r in w["runs"] if "error" not in r for n in r.get("notes", [])})
        new = [n for n in notes if n not in seen_notes]
        if new:
            lines += ["Differences the runners could not remove"
                      + (" (besides those listed above):" if len(new) < len(notes) else ":"), ""]
            lines += [f"* {n}" for n in new] + [""]
        elif notes:
            lines += ["The differences listed above apply.", ""]
        seen_notes.update(notes)
    lines += ["**Summary** (acjax / peer):", "", "| ratio | value |", "|---|---:|"]
    for label, value in result["summary"]:
        if value is not None:
            text = fmt_pct(value) if "fraction" in label or "limit" in label else f"{value:.2f}x"
            lines.append(f"| {label} | {text} |")
    if result["skipped"]:
        lines += ["", "Skipped: " + "; ".join(result["skipped"]) + "."]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: pathlib.Path) -> None:
    try:
        import matplotlib
    except ImportError:
        print("matplotlib not installed: no plot (pip install matplotlib)")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = [n for n, w in result["workloads"].items()
                 if any("time_to_result_seconds" in m for m in w["medians"].values())]
    if not workloads:
        print("nothing finished: no plot")
        return
    frameworks = list(dict.fromkeys(fw for n in workloads for fw in result["workloads"][n]
                                    ["medians"]))
    colors = dict(zip(frameworks, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 3,
                      strict=False))
    fig, axes = plt.subplots(1, 2, figsize=(15, 5.6))
    for ax, field, title, fmt in (
        (axes[0], "steady_steps_per_second", "steady env steps / s (all seeds)", fmt_sps),
        (axes[1], "time_to_result_seconds", "time to result, s (process start to trained)",
         fmt_s),
    ):
        for i, name in enumerate(workloads):
            meds = result["workloads"][name]["medians"]
            present = [fw for fw in meds if meds[fw].get(field)]
            width = 0.8 / max(1, len(present))
            for j, fw in enumerate(present):
                x = i + (j - (len(present) - 1) / 2) * width
                value = meds[fw][field]
                ax.bar(x, value, width * 0.95, color=colors[fw], label=fw)
                ax.text(x, value, fmt(value), ha="center", va="bottom", fontsize=6)
            lim = result["workloads"][name].get("limits") or {}
            if field == "steady_steps_per_second" and "policy_rollout_steps_per_second" in lim:
                ax.plot([i - 0.45, i + 0.45], [lim["policy_rollout_steps_per_second"]] * 2,
                        "k--", lw=1, label="policy-only rollout (limit)")
        ax.set_yscale("log")
        ax.set_xticks(range(len(workloads)),
                      [n.removeprefix("ppo-cartpole-") for n in workloads], fontsize=8)
        ax.set_title(title, fontsize=10)
    handles = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=len(handles),
               fontsize=8, frameon=False)
    fig.suptitle(f"acjax and peers, medians of {result['repeats']} round(s); "
                 f"{result['hardware']['line']}", fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# Hardware
# ----------------------------------------------------------------------------------------------


def git_revision() -> str | None:
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except those the help text spells out itself (default None)."""

    def _get_help_string(self, action):
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=_HelpFormatter)
    parser.add_argument("--workloads", type=names, default=None,
                        help=f"comma list (default: all) of {', '.join(WORKLOADS)}")
    parser.add_argument("--frameworks", type=names, default=None,
                        help=f"comma list (default: all) of {', '.join(FRAMEWORKS)}")
    parser.add_argument("--repeats", type=int, default=None,
                        help="rounds of alternating runs (default 3; --quick: 1)")
    parser.add_argument("--peer-python", default=sys.executable,
                        help="interpreter with the peer libraries (rejax, stable-baselines3, sbx)")
    parser.add_argument("--wide-steps", type=int, default=None,
                        help="env steps of ppo-cartpole-wide (default 5,000,000; --quick 131,072)")
    parser.add_argument("--seeds-steps", type=int, default=None,
                        help="env steps per seed of the seeds workloads (default 500,000; "
                        "--quick 8,192)")
    parser.add_argument("--eval-episodes", type=int, default=None,
                        help="greedy evaluation episodes per seed (default 20; --quick 10)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny step counts, 1 repeat, short limit measurements (smoke run)")
    parser.add_argument("--torch-threads", type=int, default=0,
                        help="SB3: torch.set_num_threads(N) (0: PyTorch's default, recorded)")
    parser.add_argument("--no-limits", action="store_true",
                        help="skip the rollout-limit and roofline child")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per child")
    parser.add_argument("--out-dir", default=str(ROOT / "results"), help="where to write")
    parser.add_argument("--tag", default=None,
                        help="file name suffix (default: '' for a full run, '-quick' for --quick)")
    args = parser.parse_args(argv)
    args.workloads = args.workloads or list(WORKLOADS)
    args.frameworks = args.frameworks or list(FRAMEWORKS)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.eval_episodes is None:
        args.eval_episodes = 10 if args.quick else 20
    if args.tag is None:
        args.tag = "-quick" if args.quick else ""
    for what, given, known in (("workloads", args.workloads, WORKLOADS),
                               ("frameworks", args.frameworks, FRAMEWORKS)):
        unknown = [x for x in given if x not in known]
        if unknown:
            parser.error(f"--{what}: unknown {unknown}; choose from {', '.join(known)}")
    if args.repeats < 1 or args.eval_episodes < 10:
        parser.error("--repeats must be >= 1 and --eval-episodes >= 10")
    # The warm cache run needs the cold one before it (it reuses that run's cache directory).
    if ("acjax-cache-warm" in args.frameworks) != ("acjax-cache-cold" in args.frameworks):
        args.frameworks = [*args.frameworks, "acjax-cache-cold", "acjax-cache-warm"]
        print("acjax-cache-cold and acjax-cache-warm run as a pair: both selected")
    return args


def spec_of(name: str, workload: Workload, framework: str, args, seed: int) -> dict:
    return dict(
        runner=workload.runners[framework],
        framework=framework,
        workload=name,
        config=CONFIGS[workload.config],
        total_timesteps=steps_of(workload, args),
        num_seeds=workload.num_seeds,
        seed=seed,
        eval_episodes=args.eval_episodes,
        steady=FRAMEWORKS[framework].cache is None,
        solve_threshold=SOLVE_THRESHOLD,
        solve_window=SOLVE_WINDOW,
        chunk_updates=SOLVE_CHUNK_UPDATES,
        torch_threads=args.torch_threads,
    )


def main(argv=None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    load_start = load_average()
    acjax_python, peer_python = sys.executable, args.peer_python
    pythons = {"acjax": acjax_python, "peer": peer_python}

    # Which frameworks can run where.
    wanted = [f for f in FRAMEWORKS if f in args.frameworks
              and any(f in WORKLOADS[w].runners for w in args.workloads)]
    probes = {}
    for python in dict.fromkeys([acjax_python, peer_python]):
        here = [f for f in wanted if pythons[FRAMEWORKS[f].interpreter] == python]
        if here:
            print(f"probing {python} for {', '.join(here)} ...", flush=True)
            probes[python] = probe(python, here, args.timeout)
    skipped = []
    runnable = set()
    for f in wanted:
        python = pythons[FRAMEWORKS[f].interpreter]
        if probes[python]["available"].get(f):
            runnable.add(f)
        else:
            fw = FRAMEWORKS[f]
            message = f"{fw.package} not installed in {python}: skipped; {fw.install}"
            if f.startswith("acjax"):
                message = f"{f}: {fw.package} not importable in {python}: skipped; {fw.install}"
            if message not in skipped:
                skipped.append(message)
            print(message, flush=True)
            error = probes[python].get("errors", {}).get(f)
            if error:
                print(f"  ({error})", flush=True)

    acjax_probe = probes.get(acjax_python, {})
    hardware = dict(
        cpu=cpu_model(), cpu_cores=cores(), python=platform.python_version(),
        acjax_python=acjax_python, peer_python=peer_python,
        acjax_versions=acjax_probe.get("versions", {}),
        peer_versions=probes.get(peer_python, {}).get("versions", {}),
        backend=acjax_probe.get("jax_backend", "cpu"),
        device_kind=acjax_probe.get("device_kind"),
    )
    jax_version = hardware["acjax_versions"].get("jax", "?")
    hardware["line"] = (f"{hardware['cpu']}, {hardware['cpu_cores']} cores"
                        + ("" if hardware["backend"] == "cpu"
                           else f", {hardware['device_kind']}")
                        + f"; jax {jax_version}, Python {hardware['python']}")
    print(f"hardware: {hardware['line']}; load average {load_start}", flush=True)
    if "rejax" in runnable:
        print("rejax runs on gymnax 1.0.1's environments through FiveValueStep, an adapter "
              "whose step() returns (obs, state, reward, terminated | truncated, info): rejax "
              "0.1.3 unpacks gymnax's pre-1.0 5-value step", flush=True)

    # The limits: rollouts at every selected workload's env count, matmul peak, update FLOPs.
    # Off-policy workloads have none: the rollout limit and the update FLOP count are PPO's.
    limits = None
    limit_workloads = [w for w in args.workloads if not WORKLOADS[w].offpolicy]
    if (not args.no_limits and limit_workloads
            and any(f.startswith("acjax") for f in runnable)):
        spec = dict(
            runner="rollout_limits:measure", framework="limits", workload="limits",
            env_counts=[WORKLOADS[w].num_envs for w in limit_workloads],
            rollout_steps=2**15 if args.quick else 2**19,
            rollout_calls=2 if args.quick else 3,
            matmul_n=2048, matmul_calls=3 if args.quick else 10,
            configs={WORKLOADS[w].config: CONFIGS[WORKLOADS[w].config] for w in limit_workloads},
        )
        print("measuring the limits (rollouts, matmul peak, update FLOPs) ...", flush=True)
        limits = run_child(acjax_python, spec, args.timeout)
        if "error" in limits:
            print(f"  limits FAILED ({limits['error']}): {limits['stderr_tail'][-500:]}")
        else:
            print(f"  peak matmul {limits['matmul']['gflops_per_second']:.1f} GFLOP/s; rollouts "
                  + ", ".join(f"{n} envs {fmt_sps(r['random_steps_per_second'])} random / "
                              f"{fmt_sps(r['policy_steps_per_second'])} policy"
                              for n, r in limits["rollout"].items())
                  + f" steps/s ({limits['process_wall_seconds']:.0f} s)", flush=True)

    workloads = {}
    for name in args.workloads:
        workload = WORKLOADS[name]
        frameworks = [f for f in workload.runners if f in runnable]
        steps = steps_of(workload, args)
        print(f"\n{name}: {workload.description}\n  {steps:,} env steps per seed, "
              f"{workload.num_seeds} seed(s); frameworks {', '.join(frameworks) or 'none'}",
              flush=True)
        runs = []
        for r in range(args.repeats):
            cache_dir = None
            for fw in frameworks:
                spec = spec_of(name, workload, fw, args, seed=r)
                threads = exec_threads_of(FRAMEWORKS[fw], workload, fw)
                if threads:
                    spec["exec_threads"] = threads
                cache = FRAMEWORKS[fw].cache
                if cache == "cold":
                    cache_dir = tempfile.mkdtemp(prefix="acjax-peers-cache-")
                if cache:
                    spec["cache_dir"] = cache_dir
                result = run_child(pythons[FRAMEWORKS[fw].interpreter], spec, args.timeout)
                result["repeat"] = r
                runs.append(result)
                print(live_line(f"  [{r + 1}/{args.repeats}] {fw:<16}", result, workload.solve),
                      flush=True)
                if cache == "warm" and cache_dir:
                    shutil.rmtree(cache_dir, ignore_errors=True)
            if cache_dir:
                shutil.rmtree(cache_dir, ignore_errors=True)
        meds = {fw: medians([x for x in runs if x["framework"] == fw], workload.solve)
                for fw in frameworks}
        workloads[name] = dict(
            description=workload.description,
            config=CONFIGS[workload.config],
            config_name=workload.config,
            env_steps=steps,
            num_seeds=workload.num_seeds,
            reference=workload.reference,
            solve=workload.solve,
            offpolicy=workload.offpolicy,
            runners={fw: workload.runners[fw] for fw in frameworks},
            runs=runs,
            medians=meds,
            ratios=workload_ratios(workload, meds),
            limits=limit_figures(workload, meds, limits),
        )

    result = dict(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        command=shlex.join(["python", "benchmarks/peers.py", *sys.argv[1:]]),
        git=git_revision(),
        hardware=hardware,
        repeats=args.repeats,
        quick=args.quick,
        load_average_start=load_start,
        load_average_end=load_average(),
        wall_seconds=time.perf_counter() - start,
        probes=list(probes.values()),
        skipped=skipped,
        limits=limits,
        workloads=workloads,
        solve=dict(threshold=SOLVE_THRESHOLD, window_episodes=SOLVE_WINDOW),
        notes=[
            ("time_to_result_seconds: from the child's first statement (a time.perf_counter() "
             "before any import) to the trained result; process_wall_seconds: the parent's "
             "clock around the whole child (interpreter start-up, evaluation and exit included)"),
            ("steady_steps_per_second: env steps over all seeds / seconds of a second call of "
             "the compiled training program with other seeds; SB3 / sbx: steps / learn() time"),
            ("final_return: greedy policy, mean over eval_episodes episodes per seed (gymnax "
             "frameworks: one shared evaluation helper; SB3 / sbx: evaluate_policy on "
             "gymnasium's version of the environment); several seeds: median and min over "
             "seeds"),
            ("limits: flops_per_step counts the update's jaxpr with every scan body times its "
             "length; XLA's CPU cost analysis (also given) counts loop bodies once; not "
             "measured for off-policy workloads (sac-pendulum)"),
        ],
    )
    result["summary"] = summary_ratios(result)

    out_dir = pathlib.Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"peers-{hardware['backend']}{args.tag}"
    table = markdown(result)
    (out_dir / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out_dir / f"{stem}.md").write_text(table)
    plot(result, out_dir / f"{stem}.png")
    print("\n" + table)
    print(f"wrote {out_dir / stem}.{{json,md,png}} in {result['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
