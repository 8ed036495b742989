"""Where a run's report rows go: metrics.csv always, TensorBoard and Weights & Biases on request.

The training loop hands over one row (a flat dict of numbers) per jitted chunk, on the host,
between chunks; nothing here runs inside the compiled program. Rows are keyed by `env_steps`
(per agent).

* `CsvLog`: `metrics.csv`, flushed after every row. It is append-only: a resumed run cuts the
  file back to the byte offset recorded in its checkpoint (dropping rows of chunks that are
  about to be trained again) and appends from there.
* `TensorBoardLog` (`--tensorboard`, needs tensorboardX): event files in `RUN_DIR/tensorboard`.
  A resumed run purges events past the checkpoint, so TensorBoard shows each step once.
* `WandbLog` (`--wandb`, needs wandb): one W&B run per run directory (its id is kept in
  `RUN_DIR/wandb-run-id.txt`, so a resumed run continues the same W&B run). wandb is imported
  only here, only when asked for.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import math
import os
import pathlib
from typing import Any, Protocol

__all__ = ["CsvLog", "Loggers", "TensorBoardLog", "WandbLog", "check_available", "open_loggers"]


class Log(Protocol):
    def write(self, row: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def check_available(*, tensorboard: bool = False, wandb: bool = False) -> None:
    """Raises `ValueError` naming the flag and the install command for a missing package."""
    for wanted, flag_name, module, extra in (
        (tensorboard, "tensorboard", "tensorboardX", "tensorboard"),
        (wandb, "wandb", "wandb", "wandb"),
    ):
        if wanted and importlib.util.find_spec(module) is None:
            raise ValueError(
                f"{flag_name}=True needs the {module} package, which is not installed; "
                f"pip install 'acjax[{extra}]' or drop --{flag_name}"
            )


def _numbers(row: dict[str, Any]) -> dict[str, float]:
    """The finite numeric entries of a row (blank and NaN cells are left out)."""
    out = {}
    for name, value in row.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value)
    return out


def tag(name: str) -> str:
    """TensorBoard / W&B name of a metrics.csv column: `eval/...`, `time/...` or `train/...`."""
    if name.startswith("eval_"):
        return "eval/" + name[len("eval_"):]
    if name in ("wall_seconds", "steps_per_second"):
        return "time/" + name
    return "train/" + name


class CsvLog:
    """metrics.csv: a header, then one row per report, flushed as soon as it is written.

    Args:
      path: the CSV file.
      resume_bytes: None for a new file (created, must not exist); otherwise the byte offset
        recorded with the checkpoint being resumed: the file is cut back to it and appended to.
    """

    def __init__(self, path: str | pathlib.Path, resume_bytes: int | None = None):
        self.path = pathlib.Path(path)
        self._fields: list[str] | None = None
        if resume_bytes is None:
            self._file = open(self.path, "xb")  # noqa: SIM115 - closed in close()
            return
        if not self.path.exists():
            if resume_bytes:
                raise ValueError(
                    f"{self.path} is missing but the checkpoint recorded {resume_bytes} bytes of "
                    "it; restore the file or start a new run"
                )
            self.path.touch()
        self._file = open(self.path, "r+b")  # noqa: SIM115 - closed in close()
        size = self._file.seek(0, os.SEEK_END)
        if size < resume_bytes:
            raise ValueError(
                f"{self.path} has {size} bytes but the checkpoint recorded {resume_bytes}; the "
                "file was cut or replaced after the checkpoint, restore it or start a new run"
            )
        self._file.seek(0)
        header = self._file.readline().decode() if resume_bytes else ""
        self._fields = next(csv.reader([header])) if header.strip() else None
        self._file.truncate(resume_bytes)
        self._file.seek(resume_bytes)

    @property
    def bytes_written(self) -> int:
        """Size of the file after the last complete row (what a checkpoint records)."""
        return self._file.tell()

    def write(self, row: dict[str, Any]) -> None:
        buffer = io.StringIO()
        if self._fields is None:
            self._fields = list(row)
            csv.writer(buffer, lineterminator="\n").writerow(self._fields)
        elif list(row) != self._fields:
            raise ValueError(
                f"{self.path} has columns {self._fields} but the run reports {list(row)}; "
                "resume with the run's own --eval-every setting"
            )
        csv.DictWriter(buffer, fieldnames=self._fields, lineterminator="\n").writerow(row)
        self._file.write(buffer.getvalue().encode())
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class TensorBoardLog:
    """TensorBoard event files (tensorboardX), one scalar per column and row.

    Args:
      logdir: directory of the event files.
      purge_step: on a resumed run, the first env step after the checkpoint: events at or
        beyond it from the interrupted process are hidden.
    """

    def __init__(self, logdir: str | pathlib.Path, purge_step: int | None = None):
        from tensorboardX import SummaryWriter

        self._writer = SummaryWriter(str(logdir), purge_step=purge_step)

    def write(self, row: dict[str, Any]) -> None:
        step = int(row["env_steps"])
        for name, value in _numbers(row).items():
            if name != "env_steps":
                self._writer.add_scalar(tag(name), value, step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class WandbLog:
    """A Weights & Biases run (`wandb` is imported here, only when this is built).

    Args:
      run_dir: the run directory (W&B's local files go to `RUN_DIR/wandb`).
      project: W&B project name.
      config: the run's configuration (logged as the W&B run's config).
      resume: continue the W&B run whose id is stored in the run directory, if any.
    """

    ID_FILE = "wandb-run-id.txt"

    def __init__(
        self, run_dir: pathlib.Path, project: str, config: dict[str, Any], resume: bool = False
    ):
        import wandb

        id_path = pathlib.Path(run_dir) / self.ID_FILE
        run_id = id_path.read_text().strip() if resume and id_path.exists() else None
        self._run = wandb.init(
            project=project, config=config, dir=str(run_dir), name=pathlib.Path(run_dir).name,
            id=run_id, resume="allow" if run_id else None,
        )
        if run_id is None:
            id_path.write_text(self._run.id + "\n")

    def write(self, row: dict[str, Any]) -> None:
        numbers = _numbers(row)
        step = int(numbers.pop("env_steps"))
        self._run.log({tag(k): v for k, v in numbers.items()}, step=step)

    def close(self) -> None:
        self._run.finish()


class Loggers:
    """Every log of a run behind one `write(row)`; `csv` is None on processes other than 0."""

    def __init__(self, csv_log: CsvLog | None, others: list[Log]):
        self.csv = csv_log
        self._others = others

    @property
    def csv_bytes(self) -> int:
        return self.csv.bytes_written if self.csv is not None else 0

    def write(self, row: dict[str, Any]) -> None:
        for log in ([self.csv] if self.csv is not None else []) + self._others:
            log.write(row)

    def close(self) -> None:
        for log in ([self.csv] if self.csv is not None else []) + self._others:
            log.close()


def open_loggers(
    run_dir: str | pathlib.Path,
    *,
    main: bool = True,
    tensorboard: bool = False,
    wandb_project: str | None = None,
    config: dict[str, Any] | None = None,
    resume_bytes: int | None = None,
    resume_step: int | None = None,
) -> Loggers:
    """Opens the logs of a run (only process 0 writes any).

    Args:
      run_dir: the run directory.
      main: whether this is process 0.
      tensorboard: write TensorBoard event files.
      wandb_project: log to this W&B project (None: no W&B).
      config: the configuration logged with W&B.
      resume_bytes: for a resumed run, metrics.csv's size at the checkpoint (None: new run).
      resume_step: for a resumed run, env steps at the checkpoint.
    """
    if not main:
        return Loggers(None, [])
    run_dir = pathlib.Path(run_dir)
    resumed = resume_bytes is not None
    others: list[Log] = []
    if tensorboard:
        purge = None if not resumed else int(resume_step or 0) + 1
        others.append(TensorBoardLog(run_dir / "tensorboard", purge_step=purge))
    if wandb_project is not None:
        others.append(WandbLog(run_dir, wandb_project, config or {}, resume=resumed))
    return Loggers(CsvLog(run_dir / "metrics.csv", resume_bytes), others)
