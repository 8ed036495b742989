"""Saved programs (acjax.run.programs), the fast-compile options and the cheap permutation."""

import dataclasses
import json
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from acjax.agents.common import PACKED_PERMUTATION_MAX, permutation
from acjax.cpu import backend
from acjax.ppo_a2c import PPOA2CConfig, make_train
from acjax.run import programs

SMALL = PPOA2CConfig(
    env="CartPole-v1", num_envs=2, num_steps=8, num_minibatches=2, update_epochs=2,
    total_timesteps=2 * 8 * 3,
)


def _leaves_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ------------------------------------------------------------------------------------------
# permutation
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 7, 32, 64, 128])
def test_permutation_is_jax_permutation_for_small_n(n):
    keys = jax.random.split(jax.random.PRNGKey(n), 64)
    ours = jax.jit(jax.vmap(lambda k: permutation(k, n)))(keys)
    theirs = jax.jit(jax.vmap(lambda k: jax.random.permutation(k, n)))(keys)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    assert ours.dtype == np.int32


@pytest.mark.parametrize("n", [5, 100, 1000, PACKED_PERMUTATION_MAX, PACKED_PERMUTATION_MAX + 1])
def test_permutation_is_a_permutation(n):
    keys = jax.random.split(jax.random.PRNGKey(1), 8)
    perms = np.asarray(jax.jit(jax.vmap(lambda k: permutation(k, n)))(keys))
    for p in perms:
        np.testing.assert_array_equal(np.sort(p), np.arange(n))
    assert len({tuple(p) for p in perms}) == len(perms)  # different keys, different orders


def test_permutation_above_the_packed_range_is_jax_permutation():
    n = PACKED_PERMUTATION_MAX + 1
    key = jax.random.PRNGKey(5)
    np.testing.assert_array_equal(
        np.asarray(permutation(key, n)), np.asarray(jax.random.permutation(key, n))
    )


def test_permutation_ties_go_in_index_order():
    # Words that agree in their high bits: the packed sort falls back to index order, as JAX's
    # stable key-value sort does for fully equal words. Draw many n=128 permutations and check
    # that every one is a permutation and the marginal of position 0 is close to uniform.
    keys = jax.random.split(jax.random.PRNGKey(0), 4096)
    perms = np.asarray(jax.jit(jax.vmap(lambda k: permutation(k, 16)))(keys))
    counts = np.bincount(perms[:, 0], minlength=16)
    expected = len(keys) / 16
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 50.0, counts  # 15 degrees of freedom: 50 is far in the tail


# ------------------------------------------------------------------------------------------
# compile options
# ------------------------------------------------------------------------------------------


def test_compiler_options_on_cpu(monkeypatch):
    monkeypatch.delenv(backend.DEFAULT_PRESET_ENV, raising=False)
    if jax.default_backend() == "cpu":
        assert backend.compiler_options() == backend.FAST_COMPILE_OPTIONS
    else:  # accelerators compile with XLA's defaults
        assert backend.compiler_options() is None
    monkeypatch.setenv(backend.DEFAULT_PRESET_ENV, "1")
    assert backend.compiler_options() is None


def test_fast_compile_preset_gives_the_same_training_result():
    trainer = make_train(SMALL)
    key = jax.random.PRNGKey(0)
    fast = backend.jit(trainer.train)(key)
    default = jax.jit(trainer.train)(key)
    _leaves_equal(fast, default)


# ------------------------------------------------------------------------------------------
# saved programs
# ------------------------------------------------------------------------------------------


def test_compile_train_saves_then_loads_the_same_program(tmp_path):
    key = jax.random.PRNGKey(3)
    trainer = make_train(SMALL)
    train, info = programs.compile_train(trainer, key, directory=tmp_path)
    assert info.outcome == "saved" and info.path.exists()
    first = train(key)
    reference = backend.jit(trainer.train)(key)
    _leaves_equal(first, reference)
    assert set(first[1]) == set(reference[1])

    again, info2 = programs.compile_train(make_train(SMALL), key, directory=tmp_path)
    assert info2.outcome == "loaded" and info2.path == info.path
    _leaves_equal(again(key), reference)
    other = jax.random.PRNGKey(4)
    _leaves_equal(again(other), backend.jit(trainer.train)(other))

    meta = json.loads(info.path.with_suffix(".json").read_text())
    assert meta["fingerprint"]["config"] == repr(SMALL)
    assert meta["fingerprint"]["acjax_sources"] == programs.source_digest()


def test_another_configuration_is_another_program(tmp_path):
    key = jax.random.PRNGKey(0)
    _, a = programs.compile_train(make_train(SMALL), key, directory=tmp_path)
    changed = dataclasses.replace(SMALL, learning_rate=1e-3)
    _, b = programs.compile_train(make_train(changed), key, directory=tmp_path)
    assert a.path != b.path and b.outcome == "saved"
    assert len(list(tmp_path.glob("*.jaxexport"))) == 2


def test_unreadable_program_is_exported_again(tmp_path):
    key = jax.random.PRNGKey(0)
    trainer = make_train(SMALL)
    _, info = programs.compile_train(trainer, key, directory=tmp_path)
    info.path.write_bytes(b"not a program")
    train, again = programs.compile_train(trainer, key, directory=tmp_path)
    assert again.outcome == "saved" and again.path == info.path
    _leaves_equal(train(key), backend.jit(trainer.train)(key))
    meta = info.path.with_suffix(".json")
    meta.write_text("{")
    _, third = programs.compile_train(trainer, key, directory=tmp_path)
    assert third.outcome == "saved"


def test_no_cache_directory_compiles_the_usual_way(monkeypatch):
    monkeypatch.setattr(programs, "programs_dir", lambda: None)
    key = jax.random.PRNGKey(0)
    trainer = make_train(SMALL)
    train, info = programs.compile_train(trainer, key)
    assert info == programs.Loaded(None, "off")
    _leaves_equal(train(key), backend.jit(trainer.train)(key))


def test_command_line_reuses_its_saved_chunk_program(tmp_path):
    import csv
    import os

    cache = tmp_path / "cache"
    env = {**os.environ, "ACJAX_CACHE_DIR": str(cache)}
    argv = ["--env", "CartPole-v1", "--total-timesteps", "2048", "--num-envs", "4",
            "--num-steps", "32"]
    rows = []
    for i in range(2):
        run = subprocess.run(
            [sys.executable, "-m", "acjax.ppo_a2c", *argv, "--run-dir", str(tmp_path / f"r{i}")],
            check=False, capture_output=True, text=True, timeout=300, env=env,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        with open(tmp_path / f"r{i}" / "metrics.csv") as f:
            rows.append([
                {k: v for k, v in row.items() if k not in ("wall_seconds", "steps_per_second")}
                for row in csv.DictReader(f)
            ])
    assert len(list((cache / programs.PROGRAMS_DIR).glob("*.jaxexport"))) == 1
    assert rows[0] == rows[1] and len(rows[0]) > 1


# ------------------------------------------------------------------------------------------
# saved programs never break a run
# ------------------------------------------------------------------------------------------


class _FakeClient:
    def __init__(self, version):
        self.platform_version = version


class _FakeDevice:
    def __init__(self, platform, version=""):
        self.platform, self.client, self.device_kind = platform, _FakeClient(version), "fake"


@pytest.mark.parametrize("platform, version, expected", [
    ("cpu", "cpu", "cpu"),
    ("gpu", "cuda 13000", "cuda"),  # jax.Device.platform on an NVIDIA GPU
    ("gpu", "PJRT C API\ncuda 12080", "cuda"),
    ("gpu", "rocm 60400", "rocm"),
    ("cuda", "", "cuda"),
    ("rocm", "", "rocm"),
    ("tpu", "PJRT C API\nTFRT TPU v5 lite", "tpu"),
])
def test_programs_are_exported_for_the_platform_jax_export_lowers_for(
    platform, version, expected, monkeypatch
):
    device = _FakeDevice(platform, version)
    assert programs.lowering_platform(device) == expected
    monkeypatch.setattr(jax, "devices", lambda *a: [device])
    print_ = programs.fingerprint("train", SMALL, (jax.random.PRNGKey(0),), None)
    assert print_["platform"] == expected
    # jax.export accepts the name (it would refuse "gpu").
    assert expected in ("cpu", "cuda", "rocm", "tpu")


def test_the_platform_name_of_this_device_is_what_jax_export_uses():
    assert programs.lowering_platform(jax.devices()[0]) == jax.export.default_export_platform()


def _saved_paths(tmp_path, trainer, key):
    print_ = programs.fingerprint("train", trainer.config, (key,), backend.compiler_options())
    digest = programs.program_key(print_)
    return tmp_path / f"{digest}.jaxexport", tmp_path / f"{digest}.json"


def test_a_program_exported_for_another_platform_is_replaced_with_a_warning(tmp_path, capsys):
    key = jax.random.PRNGKey(0)
    trainer = make_train(SMALL)
    _, info = programs.compile_train(trainer, key, directory=tmp_path)
    path, meta_path = _saved_paths(tmp_path, trainer, key)
    assert info.path == path
    other = "tpu" if programs.lowering_platform(jax.devices()[0]) != "tpu" else "cpu"
    # The same program for another platform under this one's key (as a platform misnamed in
    # the fingerprint once produced it): loading works, compiling it here does not.
    foreign = jax.export.export(jax.jit(lambda k: jax.random.uniform(k, (3,))),
                                platforms=(other,))(key)
    path.write_bytes(foreign.serialize())
    meta = json.loads(meta_path.read_text())
    meta["num_outputs"] = 1
    meta_path.write_text(json.dumps(meta))
    capsys.readouterr()
    train, again = programs.compile_train(trainer, key, directory=tmp_path)
    err = capsys.readouterr().err
    assert again.outcome == "saved", err
    assert err.count("\n") == 1 and str(path) in err and "could not be compiled here" in err
    _leaves_equal(train(key), backend.jit(trainer.train)(key))
    _, third = programs.compile_train(trainer, key, directory=tmp_path)
    assert third.outcome == "loaded" and capsys.readouterr().err == ""


def test_a_truncated_program_is_replaced_with_a_warning(tmp_path, capsys):
    key = jax.random.PRNGKey(0)
    trainer = make_train(SMALL)
    _, info = programs.compile_train(trainer, key, directory=tmp_path)
    blob = info.path.read_bytes()
    info.path.write_bytes(blob[: len(blob) // 2])
    capsys.readouterr()
    train, again = programs.compile_train(trainer, key, directory=tmp_path)
    err = capsys.readouterr().err
    assert again.outcome == "saved" and err.count("\n") == 1
    assert err.startswith("acjax: warning: saved program ") and str(info.path) in err
    assert "could not be read" in err
    _leaves_equal(train(key), backend.jit(trainer.train)(key))
    _, third = programs.compile_train(trainer, key, directory=tmp_path)  # whole again
    assert third.outcome == "loaded" and capsys.readouterr().err == ""


def test_an_unusable_folder_compiles_the_ordinary_way_with_a_warning(tmp_path, capsys):
    key = jax.random.PRNGKey(0)
    trainer = make_train(SMALL)
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("a file where the programs folder should be")
    train, info = programs.compile_train(trainer, key, directory=not_a_folder / "programs")
    err = capsys.readouterr().err
    assert info.outcome == "unsaved" and err.count("\n") == 1
    assert "could not be written" in err and str(not_a_folder / "programs") in err
    _leaves_equal(train(key), backend.jit(trainer.train)(key))
    assert not_a_folder.read_text().startswith("a file")  # nothing of the user's is touched


def test_an_unreadable_folder_compiles_the_ordinary_way_with_a_warning(
    tmp_path, capsys, monkeypatch
):
    key = jax.random.PRNGKey(0)
    trainer = make_train(SMALL)
    programs.compile_train(trainer, key, directory=tmp_path)  # a program is there
    capsys.readouterr()

    def refusing(method):
        original = getattr(pathlib.Path, method)

        def refuse(self, *args, **kwargs):
            if self.is_relative_to(tmp_path):
                raise PermissionError(13, "Permission denied", str(self))
            return original(self, *args, **kwargs)

        monkeypatch.setattr(pathlib.Path, method, refuse)

    # As a folder without read or write permission behaves (the tests may run as root, for
    # whom chmod changes nothing).
    for method in ("read_text", "read_bytes", "mkdir"):
        refusing(method)
    train, info = programs.compile_train(trainer, key, directory=tmp_path)
    err = capsys.readouterr().err
    assert info.outcome == "unsaved" and err.count("\n") == 1
    assert "could not be read (PermissionError" in err and "could not be written" in err
    _leaves_equal(train(key), backend.jit(trainer.train)(key))


def test_a_program_that_cannot_be_exported_compiles_the_ordinary_way(tmp_path, capsys,
                                                                     monkeypatch):
    key = jax.random.PRNGKey(0)
    trainer = make_train(SMALL)

    def broken(*args, **kwargs):
        raise NotImplementedError("no serialisation for this primitive")

    monkeypatch.setattr(jax.export, "export", broken)
    train, info = programs.compile_train(trainer, key, directory=tmp_path)
    err = capsys.readouterr().err
    assert info.outcome == "failed" and err.count("\n") == 1
    assert "NotImplementedError: no serialisation" in err and "the ordinary way" in err
    _leaves_equal(train(key), backend.jit(trainer.train)(key))
    assert not list(tmp_path.glob("*.jaxexport"))
