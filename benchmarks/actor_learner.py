"""Actor-learner throughput and policy lag: IMPALA and A3C beside synchronous A2C and SB3's A2C.

Every point is one run of a command line in its own child process, so each gets fresh XLA flags
(`python -m acjax.impala` splits the CPU into a learner device and an actor device before JAX
starts, `acjax.cpu.apply()` included; `python -m acjax.ppo_a2c` chooses its own layout):

* actor-learner points: `python -m acjax.impala --env ENV --mode {impala,a3c} --num-actors K
  --num-envs B` (the preset otherwise: unroll T = 16, one trajectory per update, queue of 4),
  for K actors x B environments per actor on a cross through the middle point (`--actors`
  at the middle B, `--envs` at the middle K; `--grid full`: every pair);
* the synchronous baseline at the same total env count K * B: on gymnax, the jitted A2C
  (`python -m acjax.ppo_a2c --algo a2c --num-envs K*B --num-steps 16`: rollout and update in one
  compiled program); on gymnasium, the same actor-learner code run synchronously (`--num-actors 1
  --num-envs K*B --max-policy-lag 0`: acting and learning take turns, no overlap, V-trace with
  on-policy data is A2C's n-step target), also once at the middle total on gymnax;
* the peer: Stable-Baselines3's A2C (`peers/sb3_a2c.py`, run by `peers/child.py` in
  `--peer-python`) on gymnasium's CartPole-v1 at the same total env count, in a `DummyVecEnv`
  beside gymnasium's SyncVectorEnv and a `SubprocVecEnv` beside its AsyncVectorEnv; skipped
  with the reason and the install command where it does not import.

Families: gymnax CartPole-v1 (jitted unrolls on the actor device), gymnasium CartPole-v1 in a
SyncVectorEnv (stepped in each actor thread) and in an AsyncVectorEnv (one worker process per
environment, so only totals up to `--async-max-envs`).

Measured per point, over the run's metrics.csv rows after the one that holds the second update
(the first update waits for the actors' and the learner's compiles, the second compiles the
learner's update again for its committed state): env steps/s and learner updates/s (steps and
updates between that row and the last over the wall time between them), mean queue occupancy
(the queue length the learner sees at each take), policy lag (learner version minus the version
that acted, per consumed item; mean and max). SB3: steps / `learn()` time, on one torch thread
unless `--torch-threads` says otherwise (PyTorch's default of two threads ran 15x slower beside
other work on this 2-core machine, and no faster on it when it was quiet). The parent records
the machine, its load average before every point and each child's CPU time over its wall time
("cores busy", whole process, compiles included).

SB3 and torch are best installed in their own virtualenv, as for `peers.py`:

    python -m venv /tmp/peers-venv
    /tmp/peers-venv/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu
    /tmp/peers-venv/bin/pip install stable-baselines3

    python benchmarks/actor_learner.py --peer-python /tmp/peers-venv/bin/python   # full run
    python benchmarks/actor_learner.py --quick                                     # smoke run
    python benchmarks/actor_learner.py --families gymnax --actors 1,2,4 --envs 16 --a3c all
    python benchmarks/actor_learner.py --repeats 3   # medians over 3 rounds (about 3x longer)

Writes benchmarks/results/actor-learner-<backend>.{json,md} (`--quick`: ...-quick.*; `--tag`
sets the suffix). Compiles go through a persistent compilation cache private to the run
(`--no-cache`: none), so points with the same shapes load the programs a former point compiled;
compile times are reported but never counted in the rates.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import importlib.metadata
import importlib.util
import itertools
import json
import os
import pathlib
import platform
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from _hardware import cores, cpu_model, load_average

ROOT = pathlib.Path(__file__).resolve().parent
REPO = ROOT.parent
CHILD = ROOT / "peers" / "child.py"
RESULT_PREFIX = "PEERS-RESULT "  # the same as benchmarks/peers/_common.py's
UNROLL = 16  # the actor-learner preset's num_steps on CartPole; A2C and SB3 use the same
SB3_INSTALL = ("pip install torch --index-url https://download.pytorch.org/whl/cpu && "
               "pip install stable-baselines3")
VERSIONS = ("acjax", "jax", "jaxlib", "gymnax", "gymnasium", "numpy")


@dataclasses.dataclass(frozen=True)
class Family:
    env: str
    title: str
    async_envs: bool
    host: bool
    sb3_vec: str | None
    """SB3's vector env beside this family ("dummy", "subproc"; None: no SB3 peer)."""


FAMILIES = {
    "gymnax": Family("CartPole-v1", "gymnax CartPole-v1 (jitted unrolls on the actor device)",
                     async_envs=False, host=False, sb3_vec=None),
    "gymnasium": Family("gymnasium:CartPole-v1",
                        "gymnasium CartPole-v1, SyncVectorEnv (stepped in the actor threads)",
                        async_envs=False, host=True, sb3_vec="dummy"),
    "gymnasium-async": Family("gymnasium:CartPole-v1",
                              "gymnasium CartPole-v1, AsyncVectorEnv (one worker process per "
                              "environment)", async_envs=True, host=True, sb3_vec="subproc"),
}
RUNNER_LABELS = {"impala": "IMPALA", "a3c": "A3C", "sync": "sync actor-learner, lag 0",
                 "a2c": "A2C (acjax.ppo_a2c)", "sb3": "SB3 A2C"}


# ----------------------------------------------------------------------------------------------
# Child processes
# ----------------------------------------------------------------------------------------------


def child_env(cache_dir: str | None) -> dict[str, str]:
    """This process's environment for a child: no inherited host device count (each command
    line sets its own), the run's private compilation cache (or none)."""
    env = dict(os.environ)
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", env.get("XLA_FLAGS", ""))
    env["XLA_FLAGS"] = " ".join(flags.split())
    for name in ("JAX_COMPILATION_CACHE_DIR", "ACJAX_CACHE_DIR"):
        env.pop(name, None)
        if cache_dir:
            env[name] = cache_dir
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_process(cmd: list[str], env: dict, timeout: float) -> dict:
    """Runs `cmd`; returns its output, wall time, CPU time over wall time (itself and every
    descendant it waited for, e.g. AsyncVectorEnv workers) and the load average before it."""
    load = load_average()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True,
                              timeout=timeout, check=False)
        out, err, code, error = proc.stdout, proc.stderr, proc.returncode, None
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        code, error = None, f"timed out after {timeout:g} s"
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if error is None and code:
        error = f"exit status {code}"
    return dict(stdout=out, stderr=err, error=error, process_wall_seconds=wall,
                cores_busy=cpu / wall if wall > 0 else None,
                load_average_1min_before=load[0] if load else None)


def read_rows(path: pathlib.Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _number(text: str):
    try:
        return float(text)
    except (TypeError, ValueError):
        return text


def steady(rows: list[dict]) -> dict | None:
    """Rates and means over the metrics rows after the one that holds the second update (None:
    fewer than two rows from there).

    The first update waits for the actors' and the learner's compiles; the second compiles the
    learner's update once more (the state it returns is committed to the learner's device, the
    initial one was not), which takes seconds unless the compilation cache has the program.
    """
    start = next((i for i, r in enumerate(rows) if r["updates"] >= 2), len(rows))
    rows = rows[start:]
    if len(rows) < 2:
        return None
    first, last = rows[0], rows[-1]
    seconds = last["wall_seconds"] - first["wall_seconds"]
    steps = last["env_steps"] - first["env_steps"]
    updates = last["updates"] - first["updates"]
    out = dict(rows=len(rows) - 1, from_update=int(first["updates"]), env_steps=int(steps),
               updates=int(updates), seconds=seconds,
               steps_per_second=steps / seconds if seconds > 0 else None,
               updates_per_second=updates / seconds if seconds > 0 else None)
    weights = [b["updates"] - a["updates"] for a, b in itertools.pairwise(rows)]
    total = sum(weights) or 1.0

    def mean(name: str) -> float | None:
        if not all(isinstance(r.get(name), float) for r in rows[1:]):
            return None
        return sum(w * r[name] for w, r in zip(weights, rows[1:], strict=True)) / total

    out["queue_occupancy"] = mean("queue_occupancy")
    out["policy_lag_mean"] = mean("policy_lag_mean")
    lag_max = [r["policy_lag_max"] for r in rows[1:] if isinstance(r.get("policy_lag_max"), float)]
    out["policy_lag_max"] = int(max(lag_max)) if lag_max else None
    per_row = sorted((b["env_steps"] - a["env_steps"]) / (b["wall_seconds"] - a["wall_seconds"])
                     for a, b in itertools.pairwise(rows) if b["wall_seconds"] > a["wall_seconds"])
    # How steady the rate was within the run: min, median and max over its report rows.
    out["row_steps_per_second"] = ([per_row[0], statistics.median(per_row), per_row[-1]]
                                   if per_row else None)
    return out


STEADY_MEDIANS = ("steps_per_second", "updates_per_second", "queue_occupancy", "policy_lag_mean")


def combine(point: dict, runs: list[dict]) -> dict:
    """One point over its repeats: medians of the rates, queue and mean lag, the largest lag,
    the range of steps/s; every run kept under `runs`."""
    ok = [r for r in runs if not r.get("error")]
    if not ok:
        return dict(runs[-1], repeats=0, runs=runs)
    out = dict(ok[0], repeats=len(ok), runs=runs)
    steady = {}
    for name in STEADY_MEDIANS:
        values = [r["steady"][name] for r in ok if r["steady"].get(name) is not None]
        steady[name] = statistics.median(values) if values else None
    lags = [r["steady"]["policy_lag_max"] for r in ok
            if r["steady"].get("policy_lag_max") is not None]
    steady["policy_lag_max"] = max(lags) if lags else None
    rates = [r["steady"]["steps_per_second"] for r in ok]
    steady["steps_per_second_range"] = [min(rates), max(rates)]
    out["steady"] = steady
    for name in ("cores_busy", "load_average_1min_before", "process_wall_seconds"):
        values = [r[name] for r in ok if r.get(name) is not None]
        out[name] = statistics.median(values) if values else None
    compiles = [r["summary"]["compile_seconds"] for r in ok
                if r.get("summary", {}).get("compile_seconds") is not None]
    out["summary"] = dict(ok[0].get("summary", {}),
                          compile_seconds=statistics.median(compiles) if compiles else None)
    return out


def display_command(cmd: list[str]) -> str:
    shown = ["python" if c == sys.executable else c for c in cmd]
    return shlex.join(shown)


def run_cli(point: dict, args, runs_dir: pathlib.Path, env: dict) -> dict:
    """Runs an acjax command line for `point` and reads its run directory."""
    run_dir = runs_dir / point["name"]
    common = ["--total-timesteps", str(point["env_steps"]), "--run-dir", str(run_dir),
              "--no-progress", "--eval-episodes", "2", "--no-checkpoints"]
    if point["runner"] == "a2c":
        cmd = [sys.executable, "-m", "acjax.ppo_a2c", "--env", point["env"], "--algo", "a2c",
               "--num-envs", str(point["total_envs"]), "--num-steps", str(UNROLL), *common]
    else:
        mode = "a3c" if point["runner"] == "a3c" else "impala"
        cmd = [sys.executable, "-m", "acjax.impala", "--env", point["env"], "--mode", mode,
               "--num-actors", str(point["num_actors"]), "--num-envs", str(point["num_envs"]),
               *common]
        if point["runner"] == "sync":
            cmd += ["--max-policy-lag", "0"]
        if point["async_envs"]:
            cmd.append("--async-envs")
    proc = run_process(cmd, env, args.timeout)
    result = dict(point, command=display_command(cmd).replace(str(run_dir), "RUN_DIR"),
                  **{k: proc[k] for k in ("error", "process_wall_seconds", "cores_busy",
                                          "load_average_1min_before")})
    summary_path, metrics_path = run_dir / "summary.json", run_dir / "metrics.csv"
    if proc["error"] is None and summary_path.exists() and metrics_path.exists():
        summary = json.loads(summary_path.read_text())
        result["summary"] = {k: summary.get(k) for k in (
            "env_steps", "num_updates", "wall_seconds", "train_seconds", "compile_seconds",
            "eval_seconds", "steps_per_second", "updates_per_second", "policy_lag_mean",
            "policy_lag_max", "final_train_return", "eval_return_mean", "device")}
        result["steady"] = steady(read_rows(metrics_path))
        if result["steady"] is None:
            result["error"] = ("fewer than two metrics rows after the second update: raise the "
                               "step count")
    elif proc["error"] is None:
        result["error"] = "no summary.json / metrics.csv"
    if result.get("error"):
        result["stderr_tail"] = (proc["stderr"] or proc["stdout"])[-3000:]
    if not args.keep_runs:
        shutil.rmtree(run_dir, ignore_errors=True)
    return result


def run_sb3(point: dict, args, env: dict) -> dict:
    spec = dict(runner="sb3_a2c:train_sb3_a2c", framework=f"sb3-{point['sb3_vec']}",
                workload=point["name"], num_envs=point["total_envs"], num_steps=UNROLL,
                total_timesteps=point["env_steps"], seed=0, vec_env=point["sb3_vec"],
                start_method=args.sb3_start_method, torch_threads=args.torch_threads)
    cmd = [args.peer_python, str(CHILD), json.dumps(spec)]
    proc = run_process(cmd, env, args.timeout)
    result = dict(point, command=display_command(cmd),
                  **{k: proc[k] for k in ("error", "process_wall_seconds", "cores_busy",
                                          "load_average_1min_before")})
    lines = [ln for ln in proc["stdout"].splitlines() if ln.startswith(RESULT_PREFIX)]
    if proc["error"] is None and lines:
        child = json.loads(lines[-1][len(RESULT_PREFIX):])
        result["sb3"] = child
        result["steady"] = dict(steps_per_second=child["steady_steps_per_second"],
                                updates_per_second=child["updates_per_second"],
                                env_steps=child["env_steps"], seconds=child["train_seconds"],
                                queue_occupancy=None, policy_lag_mean=None, policy_lag_max=None)
        result["summary"] = dict(compile_seconds=0.0, train_seconds=child["train_seconds"],
                                 final_train_return=child["final_train_return"])
    else:
        result["error"] = proc["error"] or "no result line"
        result["stderr_tail"] = proc["stderr"][-3000:]
    return result


def probe_peer(python: str, timeout: float) -> dict:
    """Whether SB3 (with torch and gymnasium) imports in `python`; versions; torch threads."""
    spec = dict(runner="probe:probe", framework="probe", workload="probe",
                frameworks={"sb3": ["stable_baselines3", "torch", "gymnasium"]})
    proc = run_process([python, str(CHILD), json.dumps(spec)], child_env(None), timeout)
    lines = [ln for ln in proc["stdout"].splitlines() if ln.startswith(RESULT_PREFIX)]
    if proc["error"] or not lines:
        return dict(available=False, error=proc["error"] or "no result line",
                    stderr_tail=proc["stderr"][-1000:])
    result = json.loads(lines[-1][len(RESULT_PREFIX):])
    return dict(available=bool(result["available"].get("sb3")),
                error=result.get("errors", {}).get("sb3"), versions=result.get("versions", {}),
                torch_threads=result.get("torch_threads"))


def acjax_gymnasium_reason() -> str | None:
    """Why the gymnasium families cannot run here (None: they can). Imports nothing."""
    if not (REPO / "acjax" / "envs" / "gymnasium.py").exists():
        return "acjax/envs/gymnasium.py does not exist in this checkout"
    if importlib.util.find_spec("gymnasium") is None:
        return "gymnasium is not installed here (pip install 'acjax[gymnasium]')"
    return None


# ----------------------------------------------------------------------------------------------
# The plan
# ----------------------------------------------------------------------------------------------


def grid(args) -> list[tuple[int, int]]:
    """(actors, envs per actor) pairs: the cross through the middle point, or every pair."""
    if args.grid == "full":
        return [(k, b) for k in args.actors for b in args.envs]
    pairs = [(k, args.middle[1]) for k in args.actors]
    pairs += [(args.middle[0], b) for b in args.envs if (args.middle[0], b) not in pairs]
    return pairs


def plan(args, sb3_ok: bool, host_reason: str | None) -> tuple[list[dict], list[str]]:
    """The points in run order (each actor-learner point followed by the baselines of its total
    env count not yet planned) and the skipped ones' reasons."""
    points, skipped = [], []
    for fam_name in args.families:
        fam = FAMILIES[fam_name]
        if fam.host and host_reason:
            skipped.append(f"{fam_name}: skipped, {host_reason}")
            continue
        al_steps = args.host_steps if fam.host else args.gymnax_steps
        planned_baselines = set()

        def add(runner: str, k: int, b: int, steps: int, fam_name=fam_name, fam=fam) -> None:
            name = f"{fam_name}-{runner}-{k}x{b}"
            points.append(dict(name=name, family=fam_name, env=fam.env, runner=runner,
                               num_actors=k, num_envs=b, total_envs=k * b, env_steps=steps,
                               async_envs=fam.async_envs, sb3_vec=fam.sb3_vec))

        for k, b in grid(args):
            total = k * b
            if fam.async_envs and total > args.async_max_envs:
                skipped.append(f"{fam_name} {k} x {b}: skipped, {total} worker processes > "
                               f"--async-max-envs {args.async_max_envs}")
                continue
            add("impala", k, b, al_steps)
            if args.a3c == "all" or (k, b) == args.middle:
                add("a3c", k, b, al_steps)
            if total in planned_baselines:
                continue
            planned_baselines.add(total)
            if not fam.host:
                add("a2c", 1, total, args.a2c_steps)
                if total == args.middle[0] * args.middle[1]:
                    add("sync", 1, total, al_steps)
            else:
                add("sync", 1, total, al_steps)
                if sb3_ok:
                    add("sb3", 1, total, args.host_steps)
    return points, skipped


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def fmt_sps(x) -> str:
    if x is None:
        return "-"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    return f"{x / 1e3:.1f}k" if x >= 1e3 else f"{x:.0f}"


def fmt(x, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def fmt_ratio(x) -> str:
    return "-" if x is None else f"{x:.2f}x"


def rate(point: dict | None) -> float | None:
    if point is None or point.get("error") or not point.get("steady"):
        return None
    return point["steady"]["steps_per_second"]


def ratio(a, b) -> float | None:
    return a / b if a is not None and b else None


def add_ratios(points: list[dict]) -> None:
    """Each point's synchronous baseline and SB3 peer (same family, same total env count)."""
    for p in points:
        same = [q for q in points if q["family"] == p["family"]
                and q["total_envs"] == p["total_envs"]]
        base_runner = "sync" if FAMILIES[p["family"]].host else "a2c"
        base = next((q for q in same if q["runner"] == base_runner), None)
        sb3 = next((q for q in same if q["runner"] == "sb3"), None)
        acting = p["runner"] in ("impala", "a3c")
        # The actor-learner against both; the lag-0 run (acjax's synchronous A2C on gymnasium)
        # against SB3's A2C as well; the peer against nothing.
        p["baseline"] = base["name"] if base and acting else None
        p["baseline_steps_per_second"] = rate(base) if acting else None
        p["ratio_to_baseline"] = ratio(rate(p), rate(base)) if acting else None
        against_sb3 = acting or p["runner"] == "sync"
        p["sb3_steps_per_second"] = rate(sb3) if against_sb3 else None
        p["ratio_to_sb3"] = ratio(rate(p), rate(sb3)) if against_sb3 else None


def live_line(p: dict) -> str:
    label = RUNNER_LABELS[p["runner"]] + (f" ({p['sb3_vec']})" if p["runner"] == "sb3" else "")
    head = (f"  {p['family']:<15} {label:<26} {p['num_actors']} x "
            f"{p['num_envs']:<3} ({p['total_envs']:>3} envs)")
    if p.get("error"):
        return f"{head}  FAILED: {p['error']}"
    s = p["steady"]
    line = (f"{head}  {fmt_sps(s['steps_per_second']):>7} steps/s  "
            f"{fmt(s['updates_per_second'], 1):>6} updates/s")
    if s.get("policy_lag_mean") is not None:
        line += (f"  queue {fmt(s['queue_occupancy'])}  lag {fmt(s['policy_lag_mean'])} "
                 f"(max {s['policy_lag_max']})")
    return line + (f"  [{p['process_wall_seconds']:.0f} s, load "
                   f"{fmt(p['load_average_1min_before'], 1)}]")


HEADER = ["runner", "actors x envs", "total envs", "steps/s", "updates/s", "queue", "lag mean",
          "lag max", "sync baseline steps/s", "/ baseline", "SB3 steps/s", "acjax / SB3",
          "compile s", "cores busy", "load"]


def table_row(p: dict, spread: bool = False) -> list[str]:
    lead = [RUNNER_LABELS[p["runner"]] + (f" ({p['sb3']['vec_env']})" if p.get("sb3") else ""),
            f"{p['num_actors']} x {p['num_envs']}", str(p["total_envs"])]
    if p.get("error"):
        return [*lead, f"failed: {p['error']}"] + [""] * (len(HEADER) + spread - len(lead) - 1)
    s, summary = p["steady"], p.get("summary", {})
    lag = s.get("policy_lag_mean")
    rates = [fmt_sps(s["steps_per_second"])]
    if spread:
        low, high = s["steps_per_second_range"]
        rates.append(f"{fmt_sps(low)}-{fmt_sps(high)}")
    return [*lead, *rates, fmt(s["updates_per_second"], 1),
            fmt(s.get("queue_occupancy")), fmt(lag), "-" if lag is None else
            str(s["policy_lag_max"]), fmt_sps(p["baseline_steps_per_second"]),
            fmt_ratio(p["ratio_to_baseline"]), fmt_sps(p["sb3_steps_per_second"]),
            fmt_ratio(p["ratio_to_sb3"]), fmt(summary.get("compile_seconds"), 1),
            fmt(p["cores_busy"]), fmt(p["load_average_1min_before"], 1)]


def markdown(result: dict) -> str:
    hw, args = result["hardware"], result["args"]
    spread = args["repeats"] > 1
    lines = [
        f"Hardware: {hw['line']}. Date: {result['date']}.",
        (f"Command: `{result['command']}`. Load average at start / end: "
         f"{result['load_average_start']} / {result['load_average_end']}. Total run time: "
         f"{result['wall_seconds']:.0f} s."),
        "",
        (f"Env steps per point: gymnax actor-learner {args['gymnax_steps']:,}, gymnax A2C "
         f"{args['a2c_steps']:,}, gymnasium (every runner) {args['host_steps']:,}. Unroll "
         f"{UNROLL} steps everywhere; actor-learner at its CartPole preset (one trajectory per "
         "update, queue of 4, RMSprop). steps/s and updates/s over the metrics rows after the "
         "one that holds the second update (SB3: steps / learn() time); queue: mean queue "
         "length seen by the learner at each take; lag: learner version minus the version that "
         "acted, per consumed item; sync baseline: A2C (acjax.ppo_a2c, one jitted program) on "
         "gymnax, the actor-learner with 1 actor and --max-policy-lag 0 on gymnasium, at the "
         "same total env count; compile s: the first update (persistent cache private to the "
         "run: repeated shapes load); cores busy: child CPU time / wall time, whole process; "
         "load: 1-minute load average before the point."
         + (f" Medians over {args['repeats']} rounds (range: min-max steps/s; lag max: the "
            "largest)." if spread else "")),
        "",
    ]
    for fam_name, fam in FAMILIES.items():
        pts = [p for p in result["points"] if p["family"] == fam_name]
        if not pts:
            continue
        header = [*HEADER[:4], "range", *HEADER[4:]] if spread else HEADER
        lines += [f"**{fam.title}**", "",
                  "| " + " | ".join(header) + " |",
                  "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
        order = {"impala": 0, "a3c": 1, "sync": 2, "a2c": 3, "sb3": 4}
        for p in sorted(pts, key=lambda p: (order[p["runner"]], p["total_envs"], p["num_actors"])):
            lines.append("| " + " | ".join(table_row(p, spread)) + " |")
        lines.append("")
    if result["skipped"]:
        lines += ["Skipped: " + "; ".join(result["skipped"]) + ".", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def pair(text: str) -> tuple[int, int]:
    k, b = text.lower().split("x")
    return int(k), int(b)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--families", default=",".join(FAMILIES),
                        help=f"comma list of {', '.join(FAMILIES)}")
    parser.add_argument("--actors", type=int_list, default=None,
                        help="actor counts (default 1,2,4; --quick 2)")
    parser.add_argument("--envs", type=int_list, default=None,
                        help="environments per actor (default 4,16,64; --quick 16)")
    parser.add_argument("--middle", type=pair, default=(2, 16), help="the cross's middle, KxB")
    parser.add_argument("--grid", choices=("cross", "full"), default="cross",
                        help="cross: --actors at the middle B and --envs at the middle K; full: "
                        "every pair")
    parser.add_argument("--a3c", choices=("middle", "all"), default="middle",
                        help="A3C at the middle point only, or at every point")
    parser.add_argument("--gymnax-steps", type=int, default=None,
                        help="env steps of a gymnax actor-learner point (default 200,000; "
                        "--quick 60,000)")
    parser.add_argument("--a2c-steps", type=int, default=None,
                        help="env steps of a gymnax A2C point (default 1,000,000; --quick "
                        "300,000)")
    parser.add_argument("--host-steps", type=int, default=None,
                        help="env steps of a gymnasium point, SB3 included (default 50,000; "
                        "--quick 20,000)")
    parser.add_argument("--async-max-envs", type=int, default=32,
                        help="skip AsyncVectorEnv points with more environments (worker "
                        "processes) than this")
    parser.add_argument("--peer-python", default=sys.executable,
                        help="interpreter with stable-baselines3 and torch")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="SB3: torch.set_num_threads(N) (0: PyTorch's default)")
    parser.add_argument("--sb3-start-method", default="fork",
                        help="SubprocVecEnv's multiprocessing start method")
    parser.add_argument("--repeats", type=int, default=1,
                        help="rounds over all points; the report gives medians and ranges")
    parser.add_argument("--quick", action="store_true", help="the middle point only, few steps")
    parser.add_argument("--no-cache", action="store_true",
                        help="no persistent compilation cache (every point compiles cold)")
    parser.add_argument("--keep-runs", action="store_true",
                        help="keep the run directories (printed) instead of deleting them")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per child")
    parser.add_argument("--out-dir", default=str(ROOT / "results"), help="where to write")
    parser.add_argument("--tag", default=None,
                        help="file name suffix (default: '' for a full run, '-quick' for --quick)")
    args = parser.parse_args(argv)
    args.families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = [f for f in args.families if f not in FAMILIES]
    if unknown:
        parser.error(f"--families: unknown {unknown}; choose from {', '.join(FAMILIES)}")
    quick = args.quick
    args.actors = args.actors or ([args.middle[0]] if quick else [1, 2, 4])
    args.envs = args.envs or ([args.middle[1]] if quick else [4, 16, 64])
    args.gymnax_steps = args.gymnax_steps or (60_000 if quick else 200_000)
    args.a2c_steps = args.a2c_steps or (300_000 if quick else 1_000_000)
    args.host_steps = args.host_steps or (20_000 if quick else 50_000)
    if args.tag is None:
        args.tag = "-quick" if quick else ""
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    load_start = load_average()
    host_reason = acjax_gymnasium_reason()
    if host_reason and any(FAMILIES[f].host for f in args.families):
        print(f"gymnasium families skipped: {host_reason}", flush=True)
    peer = dict(available=False, error="no gymnasium family selected")
    if any(FAMILIES[f].sb3_vec for f in args.families) and not host_reason:
        print(f"probing {args.peer_python} for stable-baselines3 ...", flush=True)
        peer = probe_peer(args.peer_python, args.timeout)
        if not peer["available"]:
            print(f"SB3 peer skipped: stable-baselines3 not importable in {args.peer_python} "
                  f"({peer.get('error')}); install it there with: {SB3_INSTALL}", flush=True)
    versions = {}
    for dist in VERSIONS:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    hardware = dict(cpu=cpu_model(), cpu_cores=cores(), python=platform.python_version(),
                    acjax_python=sys.executable, peer_python=args.peer_python,
                    versions=versions, peer_versions=peer.get("versions", {}),
                    torch_threads_default=peer.get("torch_threads"))
    hardware["line"] = (f"{hardware['cpu']}, {hardware['cpu_cores']} cores; jax "
                        f"{versions.get('jax', '?')}, gymnasium {versions.get('gymnasium', '?')}, "
                        f"Python {hardware['python']}")
    if peer.get("available"):
        pv = peer["versions"]
        hardware["line"] += (f"; peer: stable-baselines3 {pv.get('stable_baselines3', '?')}, "
                             f"torch {pv.get('torch', '?')} on "
                             f"{args.torch_threads or peer.get('torch_threads')} thread(s), "
                             f"gymnasium {pv.get('gymnasium', '?')}")
    print(f"hardware: {hardware['line']}; load average {load_start}", flush=True)

    points, skipped = plan(args, bool(peer.get("available")), host_reason)
    if not peer.get("available") and not host_reason and any(
            FAMILIES[f].sb3_vec for f in args.families):
        skipped.append(f"SB3 A2C: stable-baselines3 not importable in {args.peer_python} "
                       f"({peer.get('error')}); {SB3_INSTALL}")
    for line in skipped:
        print(line, flush=True)
    print(f"{len(points)} points", flush=True)

    cache_dir = None if args.no_cache else tempfile.mkdtemp(prefix="acjax-al-cache-")
    runs_dir = pathlib.Path(tempfile.mkdtemp(prefix="acjax-al-runs-"))
    env = child_env(cache_dir)
    runs: dict[str, list[dict]] = {p["name"]: [] for p in points}
    try:
        for r in range(args.repeats):
            family = None
            for point in points:
                if point["family"] != family:
                    family = point["family"]
                    rounds = f" (round {r + 1} of {args.repeats})" if args.repeats > 1 else ""
                    print(f"\n{FAMILIES[family].title}{rounds}", flush=True)
                result = (run_sb3(point, args, child_env(None)) if point["runner"] == "sb3"
                          else run_cli(point, args, runs_dir, env))
                result["repeat"] = r
                runs[point["name"]].append(result)
                print(live_line(result), flush=True)
                if result.get("error"):
                    print("    " + result.get("stderr_tail", "")[-800:].replace("\n", "\n    "),
                          flush=True)
    finally:
        if cache_dir:
            shutil.rmtree(cache_dir, ignore_errors=True)
        if args.keep_runs:
            print(f"run directories kept in {runs_dir}")
        else:
            shutil.rmtree(runs_dir, ignore_errors=True)

    results = [combine(p, runs[p["name"]]) for p in points if runs[p["name"]]]
    add_ratios(results)
    devices = {p["summary"].get("device") for p in results if p.get("summary", {}).get("device")}
    backend = "cpu" if devices <= {"cpu"} else "gpu"
    result = dict(
        date=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        command=shlex.join(["python", "benchmarks/actor_learner.py", *(
            sys.argv[1:] if argv is None else argv)]),
        args={k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()},
        unroll=UNROLL, hardware=hardware, peer=peer, compilation_cache=(
            "private to the run" if cache_dir else "off"),
        load_average_start=load_start, load_average_end=load_average(),
        wall_seconds=time.perf_counter() - start, skipped=skipped, points=results,
    )
    out = pathlib.Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"actor-learner-{backend}{args.tag}"
    pathlib.Path(f"{stem}.json").write_text(json.dumps(result, indent=1))
    text = markdown(result)
    pathlib.Path(f"{stem}.md").write_text(text)
    print("\n" + text)
    print(f"wrote {stem}.json and .md ({result['wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
