"""Hyperparameter sweeps over traced fields: many settings x seeds in one compiled program.

A configuration's traced fields (`acjax.config.traced`) enter the jitted computation as values,
so a grid over them needs no recompiling: build the grid with `expand_grid`, stack the settings'
`Hyperparams` with `stack_hyperparams` and `vmap` the trainer over them (and over seeds)::

    configs = expand_grid(base, {"learning_rate": (1e-4, 7e-4), "ent_coef": (0.0, 0.01)})
    trainer = make_train(configs[0])                     # static fields are shared
    hparams = stack_hyperparams(configs)                 # every leaf [H]
    state, metrics = jax.jit(jax.vmap(trainer.train))(keys, hparams)   # keys [H, 2]

Static fields (numbers of environments and steps, network widths, ...) fix array shapes or
program structure; a grid over them needs one compile per value, so they cannot be swept here.
`write_table` and `plot_learning_curves` turn the results into a CSV and a PNG.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import itertools
import math
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from acjax.core.config import flag, static_fields, traced_fields

__all__ = [
    "ALIASES",
    "expand_grid",
    "plot_learning_curves",
    "setting_labels",
    "split_sweep_args",
    "stack_hyperparams",
    "write_table",
]

ALIASES: dict[str, str] = {"lr": "learning_rate"}
"""Short names accepted after `--sweep.` (and in `expand_grid`), mapped to field names."""

_PREFIX = "--sweep."


def _sweep_flag(name: str) -> str:
    """The command-line spelling of a sweep over `name`, e.g. `--sweep.learning-rate`."""
    return _PREFIX + name.replace("_", "-")


def _values_text(values: Sequence[Any]) -> str:
    return " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _canonical_name(name: str, values: Sequence[Any], config_cls) -> str:
    """Maps a user's spelling (dashes, alias) to a traced field of `config_cls`, or raises."""
    name = name.replace("-", "_")
    name = ALIASES.get(name, name)
    sweepable = traced_fields(config_cls)
    if name in sweepable:
        return name
    listing = ", ".join(sweepable) or "(none)"
    shown = f"{name} over {_values_text(values)}" if values else name
    if name.split(".")[0] in static_fields(config_cls):
        example = f" (e.g. {flag(name)} {values[0]})" if values else ""
        raise ValueError(
            f"cannot sweep {shown}: it is a static field of {config_cls.__name__} (it fixes "
            "array shapes or program structure, so every value needs its own compile); "
            f"sweepable fields: {listing}; run one command per value instead{example}"
        )
    close = difflib.get_close_matches(name, [*sweepable, *ALIASES], n=3)
    close = [ALIASES.get(c, c) for c in close]
    hint = f"did you mean {', '.join(dict.fromkeys(close))}? " if close else ""
    raise ValueError(
        f"cannot sweep {shown}: {config_cls.__name__} has no field {name!r}; {hint}"
        f"sweepable fields: {listing}"
    )


def _parse_value(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(
            f"{_sweep_flag(name)} got {text!r}, which is not a finite number; pass numbers, "
            f"e.g. {_sweep_flag(name)} 1e-4 3e-4"
        )
    return value


def split_sweep_args(
    argv: Sequence[str], config_cls
) -> tuple[list[str], dict[str, tuple[float, ...]]]:
    """Removes the `--sweep.NAME v1 v2 ...` flags from a command line.

    NAME is a traced field of `config_cls`, spelled with `-` or `_`, or an alias from `ALIASES`
    (`--sweep.lr`); `--sweep.NAME=v1` is accepted too, and values may also be separated by
    commas. A flag's values are the tokens after it up to the next one that starts with `--`
    (negative numbers such as `-1e-3` are values).

    Args:
      argv: command-line tokens, without the program name.
      config_cls: the configuration dataclass whose traced fields may be swept.

    Returns:
      The other tokens, unchanged and in their order, and `{field_name: values}` in the order
      the sweep flags appeared.

    Raises:
      ValueError: a static or unknown field, a flag without values, a value that is not a
        finite number, a value given twice, or a field swept twice or both swept and set.
    """
    rest: list[str] = []
    sweep: dict[str, tuple[float, ...]] = {}
    spelled: dict[str, str] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if not token.startswith(_PREFIX):
            rest.append(token)
            continue
        raw_name, eq, first = token[len(_PREFIX):].partition("=")
        if not raw_name:
            raise ValueError(
                f"{token} names no field; pass e.g. --sweep.learning-rate 1e-4 3e-4"
            )
        texts = [first] if eq else []
        while i < len(argv) and not argv[i].startswith("--"):
            texts.append(argv[i])
            i += 1
        texts = [t for text in texts for t in text.split(",") if t != ""]
        name = _canonical_name(raw_name, texts, config_cls)
        if not texts:
            default = getattr(config_cls, name, None)
            known = f" (the default is {default:g})" if isinstance(default, float) else ""
            raise ValueError(
                f"{token} has no values; follow it with one or more numbers{known}, e.g. "
                f"{_sweep_flag(name)} V1 V2"
            )
        values = tuple(_parse_value(name, t) for t in texts)
        if name in sweep:
            raise ValueError(
                f"{name} is swept twice ({spelled[name]} {_values_text(sweep[name])} and "
                f"{token.partition('=')[0]} {_values_text(values)}); give all its values in one "
                f"{_sweep_flag(name)} flag"
            )
        _check_distinct(name, values)
        sweep[name] = values
        spelled[name] = token.partition("=")[0]
    for name, values in sweep.items():
        spellings = {flag(name), flag(name).replace("-", "_")} | {
            "--" + alias for alias, target in ALIASES.items() if target == name
        }
        for j, token in enumerate(rest):
            if token.partition("=")[0] in spellings:
                given = token
                if "=" not in token and j + 1 < len(rest) and not rest[j + 1].startswith("--"):
                    given = f"{token} {rest[j + 1]}"
                raise ValueError(
                    f"{name} is both set ({given}) and swept ({spelled[name]} "
                    f"{_values_text(values)}); drop one of the two flags"
                )
    return rest, sweep


def _check_distinct(name: str, values: Sequence[float]) -> None:
    seen: set[float] = set()
    for value in values:
        if value in seen:
            raise ValueError(
                f"{name}={value:g} appears twice in its sweep values {_values_text(values)}; "
                "list each value once (seeds give repeats)"
            )
        seen.add(value)


def expand_grid(base, sweep: Mapping[str, Sequence[float]]) -> list:
    """The Cartesian product of the swept values, applied to `base`.

    Args:
      base: a configuration dataclass (with `.validate()`); its other fields are kept.
      sweep: `{traced_field_or_alias: values}`; the first field varies slowest, the last
        fastest (as in `itertools.product`).

    Returns:
      `H = prod(len(values))` validated configurations (`[base]` for an empty sweep), each
      made with `dataclasses.replace`.

    Raises:
      ValueError: a static or unknown field, an empty or repeated value list, or a setting
        that fails `validate()` (the message names the setting).
    """
    config_cls = type(base)
    names: list[str] = []
    value_lists: list[tuple[float, ...]] = []
    for raw_name, values in sweep.items():
        values = tuple(values)
        name = _canonical_name(raw_name, values, config_cls)
        if name in names:
            raise ValueError(
                f"{name} is swept twice (as {raw_name!r} and {name!r}); give all its values "
                "under one name"
            )
        if not values:
            raise ValueError(
                f"sweep over {name} has no values; give one or more, e.g. {{{name!r}: (1e-4, "
                "3e-4)}"
            )
        values = tuple(float(v) for v in values)
        _check_distinct(name, values)
        names.append(name)
        value_lists.append(values)
    configs = []
    for index, combo in enumerate(itertools.product(*value_lists)):
        config = dataclasses.replace(base, **dict(zip(names, combo, strict=True)))
        try:
            config.validate()
        except ValueError as err:
            label = setting_labels([config], names)[0]
            raise ValueError(f"sweep setting {index} ({label}): {err}") from err
        configs.append(config)
    return configs


def stack_hyperparams(configs: Sequence) -> Any:
    """The settings' traced hyperparameters stacked along a leading axis.

    Args:
      configs: `H >= 1` configurations of one type that differ only in traced fields.

    Returns:
      `configs[0].hyperparams()`'s type (e.g. `Hyperparams`) with every leaf a `[H]` float32
      array, ready for `jax.vmap(trainer.train)(keys[H], hparams)`.

    Raises:
      ValueError: `configs` is empty, mixes types, or two configs differ in a static field.
    """
    if not configs:
        raise ValueError("configs=[] is empty; pass at least one configuration to stack")
    first = configs[0]
    config_cls = type(first)
    if not (dataclasses.is_dataclass(first) and hasattr(first, "hyperparams")):
        raise ValueError(
            f"configs[0] is a {config_cls.__name__}, not a configuration dataclass with "
            ".hyperparams(); pass configurations such as expand_grid's output"
        )
    for index, config in enumerate(configs):
        if type(config) is not config_cls:
            raise ValueError(
                f"configs[{index}] is a {type(config).__name__} but configs[0] is a "
                f"{config_cls.__name__}; one compiled sweep takes configurations of one type"
            )
        for name in static_fields(config_cls):
            mine, theirs = getattr(config, name), getattr(first, name)
            if mine != theirs:
                raise ValueError(
                    f"configs[{index}].{name}={mine!r} differs from configs[0].{name}={theirs!r}; "
                    "only traced fields may differ within one compiled sweep "
                    f"({', '.join(traced_fields(config_cls))}); run one sweep per {name}"
                )
    per_config = [config.hyperparams() for config in configs]
    return jax.tree.map(
        lambda *leaves: jnp.asarray(np.stack([np.asarray(x, np.float32) for x in leaves])),
        *per_config,
    )


def setting_labels(configs: Sequence, names: Sequence[str]) -> list[str]:
    """One short label per setting, e.g. `"learning_rate=0.0003, ent_coef=0.01"`.

    Values use `%g`; an empty `names` (no sweep) labels every setting `"base"`.
    """
    if not names:
        return ["base"] * len(configs)
    return [", ".join(f"{name}={getattr(c, name):g}" for name in names) for c in configs]


def _g7(value: float) -> float:
    """Rounds to 7 significant digits (float32 precision), so the CSV stays readable."""
    return float(f"{value:.7g}")


def _check_table_shape(name: str, array: np.ndarray, num_settings: int) -> None:
    if array.ndim != 2 or array.shape[0] != num_settings or array.shape[1] < 1:
        raise ValueError(
            f"{name} has shape {array.shape}; expected [settings, seeds] = [{num_settings}, K] "
            "with K >= 1 (one row per config)"
        )


def write_table(
    path: str | os.PathLike,
    configs: Sequence,
    names: Sequence[str],
    eval_returns: Any,
    *,
    final_train_returns: Any | None = None,
) -> list[dict[str, Any]]:
    """Writes one CSV row per setting: swept values and evaluation statistics over seeds.

    Args:
      path: the CSV file to write (parent folders are created).
      configs: the `H` settings, e.g. from `expand_grid`.
      names: the swept field names, written as the first columns.
      eval_returns: `[H, K]` greedy evaluation return per setting and seed.
      final_train_returns: optional `[H, K]` final training return per setting and seed (NaN
        where unknown); adds `final_train_return_mean` (NaN-ignoring).

    Returns:
      The rows as dicts: `names...`, `num_seeds`, `eval_return_mean`, `eval_return_median`,
      `eval_return_min`, `eval_return_max`, `eval_return_std` (over seeds, ddof 0),
      `eval_return_per_seed` (space-separated) and `final_train_return_mean` if given.
    """
    evals = np.asarray(eval_returns, np.float64)
    _check_table_shape("eval_returns", evals, len(configs))
    finals = None
    if final_train_returns is not None:
        finals = np.asarray(final_train_returns, np.float64)
        if finals.shape != evals.shape:
            raise ValueError(
                f"final_train_returns has shape {finals.shape}; expected eval_returns' shape "
                f"{evals.shape} ([settings, seeds])"
            )
    rows = []
    for index, config in enumerate(configs):
        seeds = evals[index]
        row: dict[str, Any] = {name: getattr(config, name) for name in names}
        row.update(
            num_seeds=int(seeds.size),
            eval_return_mean=_g7(np.mean(seeds)),
            eval_return_median=_g7(np.median(seeds)),
            eval_return_min=_g7(np.min(seeds)),
            eval_return_max=_g7(np.max(seeds)),
            eval_return_std=_g7(np.std(seeds)),
            eval_return_per_seed=" ".join(f"{x:.7g}" for x in seeds),
        )
        if finals is not None:
            known = finals[index][~np.isnan(finals[index])]
            row["final_train_return_mean"] = _g7(np.mean(known)) if known.size else math.nan
        rows.append(row)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else list(names))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def plot_learning_curves(
    path: str | os.PathLike,
    env_steps: Any,
    returns: Any,
    labels: Sequence[str],
    *,
    title: str = "",
) -> None:
    """Saves a PNG with one learning curve per setting (needs matplotlib: `acjax[plot]`).

    Each line is the mean over seeds (ignoring NaN), with a shaded band from the minimum to
    the maximum across seeds. Drawn with matplotlib's Agg canvas: no window opens and the
    global pyplot backend is left alone.

    Args:
      path: the PNG file to write (parent folders are created).
      env_steps: `[U]` environment steps at each point (per agent).
      returns: `[H, K, U]` episode return per setting, seed and point; NaN where no episode
        finished.
      labels: `H` legend entries, e.g. from `setting_labels`.
      title: the figure's title.
    """
    steps = np.asarray(env_steps, np.float64)
    values = np.asarray(returns, np.float64)
    if steps.ndim != 1:
        raise ValueError(f"env_steps has shape {steps.shape}; expected [U], one step count "
                         "per point")
    if values.ndim != 3 or values.shape[2] != steps.shape[0]:
        raise ValueError(
            f"returns has shape {values.shape}; expected [settings, seeds, U] with "
            f"U = len(env_steps) = {steps.shape[0]}"
        )
    if len(labels) != values.shape[0]:
        raise ValueError(
            f"labels has {len(labels)} entries but returns has {values.shape[0]} settings; "
            "give one label per setting"
        )
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise ImportError(
            "plot_learning_curves needs matplotlib; pip install 'acjax[plot]'"
        ) from err

    finite = ~np.isnan(values)
    count = finite.sum(axis=1)  # [H, U]
    seen = count > 0
    mean = np.where(seen, np.where(finite, values, 0.0).sum(axis=1) / np.maximum(count, 1),
                    np.nan)
    low = np.where(seen, np.where(finite, values, np.inf).min(axis=1), np.nan)
    high = np.where(seen, np.where(finite, values, -np.inf).max(axis=1), np.nan)

    fig = Figure(figsize=(7, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for h, label in enumerate(labels):
        (line,) = ax.plot(steps, mean[h], label=label, lw=1.6)
        ax.fill_between(steps, low[h], high[h], color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", title=f"mean over {values.shape[1]} seeds; band: min-max")
    fig.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
