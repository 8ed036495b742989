"""Learning curves of one or more runs: `python -m acjax.plot RUN_DIR [RUN_DIR ...]`.

Reads each run's `metrics.csv` and `config.json` and draws the training return against env
steps (per agent) to a PNG with matplotlib's Agg canvas (no window opens). Runs whose
configurations differ only in the seed form one curve: the line is the mean over their seeds,
the band spans the lowest to the highest seed (a run with `--num-seeds K` contributes its K
seeds through the `episode_return_seed_min` / `_max` columns). When the runs evaluated
periodically (`--eval-every`), a second panel shows the greedy evaluation return.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import pathlib
import sys
import warnings
from collections.abc import Sequence
from typing import Annotated

import numpy as np
import tyro

__all__ = ["Curve", "PlotOptions", "group_runs", "main", "plot_runs", "read_curve"]


@dataclasses.dataclass(frozen=True)
class PlotOptions:
    """Draw learning curves of acjax runs to a PNG."""

    run_dirs: Annotated[tuple[pathlib.Path, ...], tyro.conf.Positional]
    """Run directories (each with metrics.csv and config.json)."""
    out: pathlib.Path = pathlib.Path("learning-curve.png")
    """The PNG file to write (parent folders are created)."""
    title: str | None = None
    """Figure title (default: algorithm and environment)."""


class Curve:
    """One run's curve: `steps[U]`, `mean[U]`, `low[U]`, `high[U]` (NaN where no episode ended).

    `eval_*` hold the greedy evaluation points (empty without `--eval-every`); `seeds` is the
    set of seeds the run trained.
    """

    def __init__(self, steps, mean, low, high, eval_steps, eval_mean, eval_low, eval_high, seeds):
        self.steps, self.mean, self.low, self.high = steps, mean, low, high
        self.eval_steps, self.eval_mean = eval_steps, eval_mean
        self.eval_low, self.eval_high = eval_low, eval_high
        self.seeds = seeds


def _column(rows: list[dict[str, str]], name: str) -> np.ndarray:
    def value(text: str | None) -> float:
        try:
            return float(text) if text not in (None, "") else math.nan
        except ValueError:
            return math.nan

    return np.array([value(r.get(name)) for r in rows], np.float64)


def read_curve(run_dir: pathlib.Path) -> tuple[Curve, dict]:
    """Reads `run_dir`'s metrics.csv and config.json; raises `ValueError` naming a missing file."""
    run_dir = pathlib.Path(run_dir)
    for name in ("metrics.csv", "config.json"):
        if not (run_dir / name).is_file():
            raise ValueError(
                f"run_dir='{run_dir}' has no {name}; pass directories written by "
                "python -m acjax.ppo_a2c --run-dir ..."
            )
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{run_dir / 'metrics.csv'} has no rows yet; train for at least a chunk")
    config = json.loads((run_dir / "config.json").read_text())
    steps = _column(rows, "env_steps")
    mean = _column(rows, "episode_return")
    ended = ~np.isnan(mean)  # chunks in which no episode ended have no training return
    ev = _column(rows, "eval_return")
    has = ~np.isnan(ev)
    seed = int(config.get("config", {}).get("seed", 0))
    curve = Curve(
        steps[ended], mean[ended],
        np.fmin(_column(rows, "episode_return_seed_min"), mean)[ended],
        np.fmax(_column(rows, "episode_return_seed_max"), mean)[ended],
        steps[has], ev[has],
        np.fmin(_column(rows, "eval_return_seed_min")[has], ev[has]),
        np.fmax(_column(rows, "eval_return_seed_max")[has], ev[has]),
        set(range(seed, seed + int(config.get("num_seeds", 1)))),
    )
    return curve, config


def group_runs(configs: Sequence[dict]) -> tuple[list[int], list[str]]:
    """Groups runs whose configurations differ only in the seed.

    Returns:
      `(group index per run, label per group)`; labels name the algorithm, the environment and
      the fields that differ between groups.
    """
    def key(data: dict) -> str:
        config = {k: v for k, v in data.get("config", {}).items() if k != "seed"}
        return json.dumps([config, data.get("sweep")], sort_keys=True)

    keys: list[str] = []
    index = []
    for data in configs:
        k = key(data)
        if k not in keys:
            keys.append(k)
        index.append(keys.index(k))
    firsts = [configs[index.index(g)]["config"] for g in range(len(keys))]

    def kind(c: dict) -> tuple[str, str]:
        return str(c.get("algo", "")), str(c.get("env", ""))

    labels = []
    for c in firsts:
        # Fields are named only against runs of the same algorithm on the same environment
        # (different algorithms have different fields; their names already tell them apart).
        peers = [o for o in firsts if kind(o) == kind(c)]
        varying = sorted(
            {name for o in peers for name in o if name not in ("seed", "algo", "env")
             and any(json.dumps(p.get(name)) != json.dumps(o.get(name)) for p in peers)}
        )
        label = f"{str(c.get('algo', '')).upper()} {c.get('env', '')}".strip()
        extra = ", ".join(f"{n}={json.dumps(c.get(n))}" for n in varying)
        labels.append(f"{label} ({extra})" if extra else label)
    return index, labels


def _combine(steps_list, means, lows, highs):
    """Mean over runs and min / max band on the union of their step grids."""
    steps = np.unique(np.concatenate(steps_list)) if steps_list else np.zeros(0)

    def on_grid(s, v):
        out = np.full(steps.shape, np.nan)
        out[np.searchsorted(steps, s)] = v
        return out

    def stack(values):
        return np.stack([on_grid(s, v) for s, v in zip(steps_list, values, strict=True)])

    with warnings.catch_warnings():  # all-NaN points (no episode ended) stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return (
            steps, np.nanmean(stack(means), axis=0), np.nanmin(stack(lows), axis=0),
            np.nanmax(stack(highs), axis=0),
        )


def plot_runs(run_dirs: Sequence[pathlib.Path], out: pathlib.Path, title: str | None = None) -> int:
    """Draws the runs' learning curves to `out` (PNG); returns the number of curves drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter

    if not run_dirs:
        raise ValueError("run_dirs is empty; pass one or more run directories")
    loaded = [read_curve(d) for d in run_dirs]
    curves = [c for c, _ in loaded]
    index, labels = group_runs([data for _, data in loaded])
    with_eval = any(c.eval_steps.size for c in curves)
    fig = Figure(figsize=(11 if with_eval else 7, 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 if with_eval else 1, squeeze=False, sharey=True)[0]
    panels = [("training return", "steps", "mean", "low", "high")]
    if with_eval:
        panels.append(("greedy evaluation return", "eval_steps", "eval_mean", "eval_low",
                       "eval_high"))
    for ax, (name, s, m, lo, hi) in zip(axes, panels, strict=True):
        for g, label in enumerate(labels):
            members = [c for c, i in zip(curves, index, strict=True) if i == g]
            members = [c for c in members if getattr(c, s).size]
            if not members:
                continue
            steps, mean, low, high = _combine(
                [getattr(c, s) for c in members], [getattr(c, m) for c in members],
                [getattr(c, lo) for c in members], [getattr(c, hi) for c in members],
            )
            seeds = len(set().union(*(c.seeds for c in members)))
            marker = "o" if s == "eval_steps" else None
            (line,) = ax.plot(steps, mean, lw=1.6, marker=marker, ms=3,
                              label=f"{label}, {seeds} seed{'s' if seeds > 1 else ''}")
            if seeds > 1:
                ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, lw=0)
        ax.set_xlabel("environment steps (per agent)")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.set_ylabel("episode return")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", title="mean; band: min-max over seeds")
    configs = [data.get("config", {}) for _, data in loaded]
    algos = " / ".join(dict.fromkeys(str(c.get("algo", "")).upper() for c in configs))
    envs = ", ".join(dict.fromkeys(str(c.get("env", "")) for c in configs))
    fig.suptitle(title or f"{algos} on {envs}")
    fig.tight_layout()
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return len(labels)


def main(argv: list[str] | None = None) -> pathlib.Path:
    """`python -m acjax.plot RUN_DIR [RUN_DIR ...] [--out PNG]`; bad input exits with status 2."""
    options = tyro.cli(PlotOptions, args=sys.argv[1:] if argv is None else argv,
                       prog="python -m acjax.plot")
    try:
        count = plot_runs(options.run_dirs, options.out, options.title)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"{count} curve(s) from {len(options.run_dirs)} run(s) -> {options.out}")
    return options.out


if __name__ == "__main__":
    main()
