"""A run's life besides checkpoints: evaluation columns, TensorBoard, W&B, plots and renders."""

import csv
import importlib.util
import json
import os
import pathlib
import shutil
import struct
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
# As in test_checkpoint.py (so the two share compiled programs): 50 chunks of 128 env steps.
TINY = ["--env", "CartPole-v1", "--num-envs", "4", "--num-steps", "16", "--total-timesteps",
        "6400", "--num-reports", "50", "--eval-episodes", "2", "--no-progress"]

FAKE_WANDB = '''
import json, os
def _note(entry):
    with open(os.environ["FAKE_WANDB_LOG"], "a") as f:
        f.write(json.dumps(entry) + "\\n")
_note({"imported": True})
class _Run:
    id = "run-1234"
    def log(self, data, step):
        _note({"log": data, "step": step})
    def finish(self):
        _note({"finish": True})
def init(**kwargs):
    _note({"init": {k: kwargs[k] for k in ("project", "id", "resume", "name")}})
    return _Run()
'''


def _env(basetemp: pathlib.Path) -> dict:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": path,
            "ACJAX_CACHE_DIR": str(basetemp / "jax-cache")}  # shared by the session's modules


def _run(module: str, *args, tmp: pathlib.Path) -> subprocess.CompletedProcess:
    """`python -m module args` in `tmp` (the session's base temporary directory)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=tmp,
        env=_env(tmp), timeout=300, check=False,
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> pathlib.Path:
    """6400 env steps with TensorBoard and a greedy evaluation every 1600 steps.

    The same run as test_checkpoint.py's `straight` (same place, same flags): made once.
    """
    run_dir = tmp_path_factory.getbasetemp() / "tiny-run"
    if not (run_dir / "summary.json").exists():
        out = _run("acjax.ppo_a2c", *TINY, "--eval-every", "1600", "--tensorboard",
                   "--run-dir", str(run_dir), tmp=run_dir.parent)
        assert out.returncode == 0, out.stderr[-3000:]
    return run_dir


def test_eval_every_adds_greedy_evaluation_columns(run):
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 50
    for name in ("eval_return", "eval_return_seed_min", "eval_return_seed_max", "eval_length"):
        assert name in rows[0], name
    evaluated = [int(r["env_steps"]) for r in rows if r["eval_return"] not in ("", "nan")]
    assert evaluated == [1664, 3200, 4864, 6400]  # whole chunks of 128 steps
    for r in rows:
        if int(r["env_steps"]) in evaluated:
            assert 1.0 <= float(r["eval_return"]) <= 500.0
            assert float(r["eval_length"]) == pytest.approx(float(r["eval_return"]))  # CartPole


def _event_scalars(directory: pathlib.Path) -> dict[str, list[int]]:
    """Tags and steps of the scalar summaries in TFRecord event files."""
    from tensorboardX.proto import event_pb2

    out: dict[str, list[int]] = {}
    files = sorted(directory.glob("events.out.tfevents.*"))
    assert files, f"no event files in {directory}"
    for path in files:
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack_from("<Q", data, offset)
            record = data[offset + 12: offset + 12 + length]
            offset += 12 + length + 4
            event = event_pb2.Event()
            event.ParseFromString(record)
            for value in event.summary.value:
                out.setdefault(value.tag, []).append(event.step)
    return out


@pytest.mark.skipif(importlib.util.find_spec("tensorboardX") is None,
                    reason="tensorboardX is not installed (pip install 'acjax[tensorboard]')")
def test_tensorboard_writes_event_files_of_every_column(run):
    scalars = _event_scalars(run / "tensorboard")
    assert scalars["train/updates"] == [128 * i for i in range(1, 51)]
    assert scalars["eval/return"] == [1664, 3200, 4864, 6400]
    assert "train/loss" in scalars and "time/steps_per_second" in scalars


def test_wandb_is_imported_only_when_asked(tmp_path, monkeypatch):
    import acjax.plot
    import acjax.ppo_a2c
    import acjax.run.checkpoint
    import acjax.run.cli  # noqa: F401
    from acjax.run import loggers

    assert "wandb" not in sys.modules
    fake = tmp_path / "fake-packages"
    (fake / "wandb").mkdir(parents=True)
    (fake / "wandb" / "__init__.py").write_text(FAKE_WANDB)
    log = tmp_path / "wandb.log"
    monkeypatch.syspath_prepend(str(fake))
    monkeypatch.setenv("FAKE_WANDB_LOG", str(log))
    monkeypatch.delitem(sys.modules, "wandb", raising=False)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    plain = loggers.open_loggers(run_dir, tensorboard=False)
    plain.write({"env_steps": 1, "episode_return": 1.0})
    plain.close()
    assert "wandb" not in sys.modules and not log.exists()  # not asked: never imported
    (run_dir / "metrics.csv").unlink()
    try:
        first = loggers.open_loggers(run_dir, wandb_project="proj", config={"a": 1})
        first.write({"env_steps": 10, "episode_return": 3.5, "eval_return": ""})
        first.close()
        again = loggers.open_loggers(run_dir, wandb_project="proj", resume_bytes=0,
                                     resume_step=0)
        again.close()
    finally:
        sys.modules.pop("wandb", None)
    notes = [json.loads(line) for line in log.read_text().splitlines()]
    inits = [n["init"] for n in notes if "init" in n]
    assert inits[0] == {"project": "proj", "id": None, "resume": None, "name": "run"}
    assert inits[1]["id"] == "run-1234" and inits[1]["resume"] == "allow"  # the same W&B run
    logged = [n for n in notes if "log" in n]
    assert logged == [{"log": {"train/episode_return": 3.5}, "step": 10}]


def test_wandb_without_the_package_is_a_clear_error(tmp_path):
    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    out = _run("acjax.ppo_a2c", *TINY, "--wandb", "--run-dir", str(tmp_path / "w"),
               tmp=tmp_path.parent)
    assert out.returncode == 2 and "pip install 'acjax[wandb]'" in out.stderr
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").iterdir())


def test_plot_draws_learning_curves_grouped_over_seeds(run, tmp_path):
    out = _run("acjax.plot", str(run), "--out", str(tmp_path / "curve.png"), tmp=run.parent)
    assert "1 curve(s) from 1 run(s)" in out.stdout
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    from acjax.run.plot import plot_runs

    def variant(name, **change):
        copy = tmp_path / name
        shutil.copytree(run, copy, ignore=shutil.ignore_patterns("checkpoints", "tensorboard"))
        data = json.loads((copy / "config.json").read_text())
        data["config"].update(change)
        (copy / "config.json").write_text(json.dumps(data))
        return copy

    seed1, other = variant("seed1", seed=1), variant("gamma", gamma=0.5)
    assert plot_runs([run, seed1], tmp_path / "two.png") == 1  # seeds of one configuration
    assert plot_runs([run, seed1, other], tmp_path / "three.png") == 2
    bad = _run("acjax.plot", str(tmp_path / "missing"), tmp=run.parent)
    assert bad.returncode == 2 and "has no metrics.csv" in bad.stderr


@pytest.mark.skipif(importlib.util.find_spec("pygame") is None,
                    reason="pygame is not installed (pip install 'acjax[render]')")
def test_render_writes_a_gif_with_gymnax_visualiser(run, tmp_path):
    from PIL import Image

    gif = tmp_path / "episode.gif"
    out = _run("acjax.render", str(run), "--out", str(gif), "--max-steps", "6", "--every", "2",
               tmp=run.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("6 steps, return 6.00")
    with Image.open(gif) as image:
        assert image.format == "GIF" and image.n_frames == 3


def test_render_says_when_an_env_has_no_visualiser(run, tmp_path):
    odd = tmp_path / "odd"
    odd.mkdir()
    data = json.loads((run / "config.json").read_text())
    data["config"]["env"] = "DeepSea-bsuite"
    (odd / "config.json").write_text(json.dumps(data))
    out = _run("acjax.render", str(odd), tmp=run.parent)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "env='DeepSea-bsuite' has no gymnax visualiser" in out.stderr
