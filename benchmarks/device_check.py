"""How acjax runs on the machine at hand (a GPU, a TPU or the CPU): one table.

    python benchmarks/device_check.py                    # full counts, under 8 minutes on a GPU
    python benchmarks/device_check.py --quick            # small counts: a smoke test on CPU
    python benchmarks/device_check.py --parts main,tests --deadline 300

Each check runs in a fresh child process, so one that fails or runs out of time leaves the others
standing:

* `main`: README's first command, `python -m acjax.ppo_a2c --env CartPole-v1`, with JAX's
  compilation cache (and acjax's saved programs) in a new folder (cold), then again with both
  filled (warm): wall time, compile time, greedy return, and any warning it printed.
* `ppo1`, `seeds`, `wide`: PPO on CartPole-v1 at PureJaxRL's configuration for one seed, for
  2048 seeds in one `jit(vmap(train))`, and at 2048 envs x 64 steps; `sac`: SAC on Pendulum-v1.
  acjax beside rejax 0.1.3 where rejax imports (`--peer-python`), through the runners of
  `benchmarks/peers/` (the same code `benchmarks/peers.py` times).
* `tests`: the test suite (`python -m pytest`, in parallel with pytest-xdist when it is
  installed): passed / failed / errors / skipped, and the failing tests' names.

The table goes to stdout and, with everything measured, to
`--out-dir/device-check-BACKEND[TAG].{json,md}` (default `benchmarks/results/`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

import peers
from _hardware import cores, cpu_model

ROOT = pathlib.Path(__file__).resolve().parent
REPO = ROOT.parent
PARTS = ("main", "ppo1", "seeds", "wide", "sac", "tests")
MAIN_COMMAND = ["-m", "acjax.ppo_a2c", "--env", "CartPole-v1"]
VERSIONS = ("jax", "jaxlib", "flax", "optax", "gymnax", "chex", "orbax-checkpoint", "numpy",
            "rejax")


# ----------------------------------------------------------------------------------------------
# The checks
# ----------------------------------------------------------------------------------------------


class Clock:
    """The run's deadline: a child gets at most what is left, less what the tests need."""

    def __init__(self, deadline: float | None, reserve: float):
        self.start, self.deadline, self.reserve = time.monotonic(), deadline, reserve

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def timeout(self, wanted: float, *, reserve: bool = True) -> float:
        if self.deadline is None:
            return wanted
        left = self.deadline - self.elapsed() - (self.reserve if reserve else 0.0)
        return max(1.0, min(wanted, left))


def child_env() -> dict[str, str]:
    """`benchmarks/peers.py`'s child environment (`main` puts this checkout on PYTHONPATH)."""
    return peers.child_env()


def check_main(args, clock: Clock) -> list[dict]:
    """README's first command with the compilation cache cold, then warm."""
    work = pathlib.Path(tempfile.mkdtemp(prefix="acjax-device-check-"))
    env = {**child_env(), "ACJAX_CACHE_DIR": str(work / "cache")}
    rows = []
    try:
        for label in ("cold", "warm"):
            cwd = work / label
            cwd.mkdir()
            command = [*MAIN_COMMAND, *(["--total-timesteps", "4096"] if args.quick else [])]
            t = time.perf_counter()
            try:
                proc = subprocess.run([sys.executable, *command], cwd=cwd, env=env, text=True,
                                      capture_output=True, timeout=clock.timeout(240),
                                      check=False)
            except subprocess.TimeoutExpired:
                rows.append(dict(check=f"main command, cache {label}", error="timed out"))
                break
            wall = time.perf_counter() - t
            summaries = list(cwd.glob("runs/*/summary.json"))
            row = dict(check=f"main command, cache {label}", command="python " + " ".join(command),
                       returncode=proc.returncode, wall_seconds=wall,
                       warnings=[ln for ln in proc.stderr.splitlines() if "warning" in ln.lower()],
                       saved_programs=len(list((work / "cache").rglob("*.jaxexport"))))
            if proc.returncode or not summaries:
                row["error"] = f"exit status {proc.returncode}"
                row["stderr_tail"] = proc.stderr[-2000:]
            else:
                summary = json.loads(summaries[0].read_text())
                row.update(compile_seconds=summary["compile_seconds"],
                           steps_per_second=summary["steps_per_second"],
                           eval_return=summary["eval_return_mean"],
                           device=summary["device"])
            rows.append(row)
            print(line_of(row), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


# The PPO / SAC workloads: (peers workload, runners per framework, seeds, steps full / quick,
# steady second call).
WORKLOADS = {
    "ppo1": ("ppo-cartpole", {"acjax": "acjax_ppo:train_single", "rejax": "rejax_ppo:train"},
             "purejaxrl", (1, 1), (500_000, 4_096), True),
    "seeds": ("ppo-cartpole-seeds2048",
              {"acjax": "acjax_ppo:train_vmap", "rejax": "rejax_ppo:train"},
              "purejaxrl", (2048, 4), (500_000, 2_048), False),
    "wide": ("ppo-cartpole-wide", {"acjax": "acjax_ppo:train_single", "rejax": "rejax_ppo:train"},
             "wide", (1, 1), (5_000_000, 131_072), True),
    "sac": ("sac-pendulum", {"acjax": "acjax_sac:train_single", "rejax": "rejax_sac:train"},
            "sac-pendulum", (1, 1), (20_000, 2_000), True),
}
TITLES = {
    "ppo1": "PPO, PureJaxRL config, 1 seed",
    "seeds": "PPO, PureJaxRL config, {seeds} seeds in one jit(vmap)",
    "wide": "PPO, 2048 envs x 64 steps, 1 seed",
    "sac": "SAC, Pendulum-v1, 1 seed",
}


def workload_steps(config_name: str, steps: int) -> int:
    cfg = peers.CONFIGS[config_name]
    multiple = cfg["step_multiple"] if "step_multiple" in cfg else cfg["num_envs"] * cfg["num_steps"]
    return max(1, steps // multiple) * multiple


def check_workload(part: str, args, clock: Clock, available: dict[str, bool]) -> list[dict]:
    workload, runners, config_name, seeds, steps, steady = WORKLOADS[part]
    num_seeds = seeds[1] if args.quick else (args.seeds if part == "seeds" else seeds[0])
    env_steps = workload_steps(config_name, steps[1] if args.quick else steps[0])
    results = {}
    for framework, runner in runners.items():
        if not available.get(framework):
            results[framework] = dict(error="not installed")
            continue
        spec = dict(runner=runner, framework=framework, workload=workload,
                    config=peers.CONFIGS[config_name], total_timesteps=env_steps,
                    num_seeds=num_seeds, seed=0, eval_episodes=args.eval_episodes,
                    steady=steady, torch_threads=None)
        python = sys.executable if framework == "acjax" else args.peer_python
        results[framework] = peers.run_child(python, spec, clock.timeout(args.child_timeout))
    row = dict(check=TITLES[part].format(seeds=num_seeds), part=part, env_steps=env_steps,
               num_seeds=num_seeds, acjax=results["acjax"], rejax=results["rejax"])
    print(line_of(row), flush=True)
    return [row]


def check_tests(args, clock: Clock) -> list[dict]:
    """The test suite; on the deadline pytest is interrupted (SIGINT) and what ran is counted."""
    work = pathlib.Path(tempfile.mkdtemp(prefix="acjax-device-tests-"))
    junit = work / "junit.xml"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               f"--junitxml={junit}", *args.test_args]
    workers = args.test_workers
    if workers is None and not args.quick:
        workers = min(cores(), 12)
    if workers and workers > 1 and _importable("xdist"):  # else one process
        command += ["-n", str(workers)]
    timeout = clock.timeout(args.test_timeout, reserve=False)
    t = time.perf_counter()
    proc = subprocess.Popen(command, cwd=REPO, env=child_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    interrupted = False
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        interrupted = True
        proc.send_signal(signal.SIGINT)  # pytest then reports what ran and writes its XML
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    row = dict(check="test suite", command=shlex.join(["python", *command[1:]]).replace(
                   str(junit), "JUNIT"),
               returncode=proc.returncode, seconds=time.perf_counter() - t,
               interrupted_at_deadline=interrupted, summary=_last_line(out))
    if junit.exists():
        row.update(_junit_counts(junit))
    else:
        row["error"] = "no report"
        row["output_tail"] = out[-3000:]
    if args.out_dir and junit.exists():
        shutil.copy(junit, pathlib.Path(args.out_dir) / f"device-check-junit{args.tag}.xml")
    shutil.rmtree(work, ignore_errors=True)
    print(line_of(row), flush=True)
    return [row]


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _junit_counts(path: pathlib.Path) -> dict:
    root = ET.parse(path).getroot()
    cases = root.iter("testcase")
    passed, failed, errors, skipped, names = 0, [], [], 0, []
    for case in cases:
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        kinds = {child.tag for child in case}
        if "failure" in kinds:
            failed.append(name)
        elif "error" in kinds:
            errors.append(name)
        elif "skipped" in kinds:
            skipped += 1
        else:
            passed += 1
        names.append(name)
    return dict(passed=passed, failed=len(failed), errors=len(errors), skipped=skipped,
                failures=failed[:40], error_names=errors[:40], collected_run=len(names))


# ----------------------------------------------------------------------------------------------
# The table
# ----------------------------------------------------------------------------------------------


def _sps(x) -> str:
    return peers.fmt_sps(x) if x else "-"


def _s(x) -> str:
    return f"{x:.1f} s" if x is not None else "-"


def _ret(x) -> str:
    return f"{x:.1f}" if x is not None else "-"


def cell(row: dict, framework: str) -> str:
    """One framework's cell of a workload row."""
    r = row[framework]
    if "error" in r:
        return r["error"] if r["error"] == "not installed" else f"failed ({r['error']})"
    part = row["part"]
    if part == "seeds":
        agg = r["aggregate_env_steps"] / r["train_seconds"] if r.get("train_seconds") else None
        return (f"train {_s(r['train_seconds'])} ({_sps(agg)} steps/s); time to result "
                f"{_s(r['time_to_result_seconds'])}; median return {_ret(r['final_return'])}")
    return (f"{_sps(r.get('steady_steps_per_second'))} steps/s; time to result "
            f"{_s(r.get('time_to_result_seconds'))}; return {_ret(r.get('final_return'))}")


def ratio(row: dict) -> str:
    a, b = row["acjax"], row["rejax"]
    if "error" in a or "error" in b:
        return "-"
    if row["part"] == "seeds":
        train = peers.ratio(b.get("train_seconds"), a.get("train_seconds"))
        ttr = peers.ratio(a.get("time_to_result_seconds"), b.get("time_to_result_seconds"))
        return f"train {peers.fmt_ratio(train)}; time to result {peers.fmt_ratio(ttr)}"
    speed = peers.ratio(a.get("steady_steps_per_second"), b.get("steady_steps_per_second"))
    ttr = peers.ratio(a.get("time_to_result_seconds"), b.get("time_to_result_seconds"))
    return f"{peers.fmt_ratio(speed)} steps/s; time to result {peers.fmt_ratio(ttr)}"


def line_of(row: dict) -> str:
    """A row as one line of Markdown: `| check | acjax | rejax | acjax / rejax |`."""
    if "part" in row:
        return f"| {row['check']} | {cell(row, 'acjax')} | {cell(row, 'rejax')} | {ratio(row)} |"
    if row["check"] == "test suite":
        if "passed" not in row:
            return f"| test suite | failed to report ({row.get('summary', '')}) | | |"
        text = (f"{row['passed']} passed, {row['failed']} failed, {row['errors']} errors, "
                f"{row['skipped']} skipped in {row['seconds']:.0f} s")
        if row["interrupted_at_deadline"]:
            text += " (stopped at the deadline: the rest did not run)"
        return f"| test suite | {text} | | |"
    if "error" in row:
        return f"| {row['check']} | failed ({row['error']}) | | |"
    warned = f"; {len(row['warnings'])} warning line(s)" if row["warnings"] else "; no warning"
    return (f"| {row['check']} | wall {_s(row['wall_seconds'])}, compile "
            f"{_s(row['compile_seconds'])}, greedy return {_ret(row['eval_return'])}"
            f"{warned}; {row['saved_programs']} saved program(s) | | |")


def markdown(result: dict) -> str:
    h = result["hardware"]
    versions = ", ".join(f"{k} {v}" for k, v in result["versions"].items() if v)
    lines = [
        f"# Device check: {h['backend']} / {h['device_kind']} ({h['device_count']} device(s))",
        "",
        (f"{result['date']}; {h['cpu']}, {h['cpu_cores']} cores; Python {h['python']}; "
         f"{versions}; acjax {result['git'] or '?'}{'; --quick' if result['quick'] else ''}"),
        "",
        "| check | acjax | rejax | acjax / rejax |",
        "|---|---|---|---|",
        *(line_of(row) for row in result["rows"]),
        "",
        (f"Command: `{result['command']}` ({result['wall_seconds']:.0f} s). Ratios: steps/s "
         "acjax / rejax (above 1: acjax faster); times acjax / rejax (below 1: acjax faster)."),
    ]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="small counts (a smoke test on CPU); tests: --test-args' default "
                             "becomes one small module")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma list of {', '.join(PARTS)}")
    parser.add_argument("--seeds", type=int, default=2048, help="seeds of the 'seeds' check")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--peer-python", default=sys.executable,
                        help="interpreter with rejax 0.1.3 installed")
    parser.add_argument("--deadline", type=float, default=None,
                        help="seconds for the whole check; the tests get what is left")
    parser.add_argument("--test-reserve", type=float, default=150.0,
                        help="with --deadline: seconds kept for the tests")
    parser.add_argument("--child-timeout", type=float, default=300.0)
    parser.add_argument("--test-timeout", type=float, default=900.0)
    parser.add_argument("--test-workers", type=int, default=None,
                        help="pytest-xdist workers (default: up to 12 where xdist is installed)")
    parser.add_argument("--test-args", default=None,
                        help="pytest's arguments, one string (default: the whole suite; "
                             "--quick: tests/test_readme.py)")
    parser.add_argument("--out-dir", default=str(ROOT / "results"))
    parser.add_argument("--tag", default="", help="suffix of the output files")
    args = parser.parse_args(argv)
    args.parts = [p for p in args.parts.split(",") if p]
    unknown = [p for p in args.parts if p not in PARTS]
    if unknown:
        parser.error(f"--parts {','.join(unknown)}: not one of {', '.join(PARTS)}")
    if args.test_args is None:
        args.test_args = "tests/test_readme.py" if args.quick else ""
    args.test_args = shlex.split(args.test_args)
    if args.seeds < 1:
        parser.error(f"--seeds {args.seeds} must be >= 1, e.g. --seeds 2048")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    start = time.perf_counter()
    # Every child imports this checkout's acjax, installed or not.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    clock = Clock(args.deadline, args.test_reserve if "tests" in args.parts else 0.0)
    pathlib.Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    probes = {}
    for name, python in dict(acjax=sys.executable, rejax=args.peer_python).items():
        frameworks = {name: [name, "gymnax"]}
        probes[name] = peers.run_child(python, dict(runner="probe:probe", framework="probe",
                                                    workload="probe", frameworks=frameworks),
                                       clock.timeout(120))
    available = {name: bool(p.get("available", {}).get(name)) for name, p in probes.items()}
    info = probes["acjax"]
    if not available["acjax"]:
        raise SystemExit(f"acjax does not import here: {info.get('errors') or info}")
    hardware = dict(backend=info.get("jax_backend"), device_kind=info.get("device_kind"),
                    device_count=info.get("device_count"), cpu=cpu_model(),
                    cpu_cores=cores(), python=info.get("python_version"))
    versions = {k: info.get("versions", {}).get(k) for k in VERSIONS}
    versions["rejax"] = probes["rejax"].get("versions", {}).get("rejax")
    print(f"{hardware['backend']} / {hardware['device_kind']}; "
          + ", ".join(f"{k} {v}" for k, v in versions.items() if v), flush=True)

    rows: list[dict] = []
    for part in args.parts:
        if part == "main":
            rows += check_main(args, clock)
        elif part == "tests":
            continue  # last: it gets what is left of the deadline
        else:
            rows += check_workload(part, args, clock, available)
    if "tests" in args.parts:
        rows += check_tests(args, clock)

    result = dict(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        command=shlex.join(["python", "benchmarks/device_check.py", *(argv or sys.argv[1:])]),
        git=peers.git_revision(), quick=args.quick, hardware=hardware, versions=versions,
        rows=rows, wall_seconds=time.perf_counter() - start,
    )
    stem = pathlib.Path(args.out_dir) / f"device-check-{hardware['backend']}{args.tag}"
    table = markdown(result)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    stem.with_suffix(".md").write_text(table)
    print("\n" + table + f"\nwrote {stem}.json and .md", flush=True)
    return result


if __name__ == "__main__":
    main()
