"""Sweeps over traced hyperparameters: argv parsing, grids, stacking, tables, plots, one compile."""

import csv
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from acjax.config import traced_fields
from acjax.networks import NetworkConfig
from acjax.ppo_a2c import Hyperparams, PPOA2CConfig, make_train, ppo_a2c_preset
from acjax.run.sweep import (
    ALIASES,
    expand_grid,
    plot_learning_curves,
    setting_labels,
    split_sweep_args,
    stack_hyperparams,
    write_table,
)

BASE = dataclasses.replace(ppo_a2c_preset("CartPole-v1", "a2c"), total_timesteps=2048)


# ----------------------------------------------------------------------------- split_sweep_args


def test_split_keeps_other_tokens_in_order_and_reads_every_spelling():
    argv = [
        "--env", "CartPole-v1",
        "--sweep.lr", "1e-4", "3e-4",
        "--seed", "3",
        "--sweep.ent-coef=0.0",
        "--network.hidden-sizes", "32", "32",
        "--sweep.gae_lambda", "0.9", "-0.5",
        "--no-progress",
        "--sweep.gamma=0.9,0.99",
    ]
    rest, sweep = split_sweep_args(argv, PPOA2CConfig)
    assert rest == [
        "--env", "CartPole-v1", "--seed", "3", "--network.hidden-sizes", "32", "32",
        "--no-progress",
    ]
    assert list(sweep) == ["learning_rate", "ent_coef", "gae_lambda", "gamma"]
    assert sweep == {
        "learning_rate": (1e-4, 3e-4),
        "ent_coef": (0.0,),
        "gae_lambda": (0.9, -0.5),
        "gamma": (0.9, 0.99),
    }
    assert all(isinstance(v, float) for values in sweep.values() for v in values)


def test_split_without_sweep_flags_returns_argv_unchanged():
    argv = ["--env", "Pendulum-v1", "--learning-rate=1e-3", "--sweep-like", "x"]
    rest, sweep = split_sweep_args(argv, PPOA2CConfig)
    assert rest == argv and rest is not argv
    assert sweep == {}


def test_aliases_name_traced_fields():
    for alias, name in ALIASES.items():
        assert name in traced_fields(PPOA2CConfig), alias


@pytest.mark.parametrize(
    "argv, pieces",
    [
        (["--sweep.num-envs", "4", "8"],
         ["cannot sweep num_envs", "4 8", "static field of PPOA2CConfig", "learning_rate",
          "one command per value", "--num-envs 4"]),
        (["--sweep.update_epochs=2"], ["update_epochs", "2", "static field"]),
        (["--sweep.network.hidden-sizes", "32"], ["network.hidden_sizes", "32", "static"]),
        (["--sweep.learnin-rate", "1e-3"],
         ["learnin_rate", "1e-3", "did you mean learning_rate", "sweepable fields: "]),
        (["--sweep.gama", "0.9"], ["gama", "0.9", "did you mean gamma"]),
        (["--sweep.lr"],
         ["--sweep.lr has no values", "default is 0.00025", "--sweep.learning-rate V1 V2"]),
        (["--sweep.gamma", "--seed", "1"], ["--sweep.gamma has no values", "default is 0.99"]),
        (["--sweep.gamma="], ["--sweep.gamma= has no values"]),
        (["--sweep.lr", "1e-4", "fast"], ["--sweep.learning-rate", "'fast'", "not a finite"]),
        (["--sweep.ent-coef=nan"], ["--sweep.ent-coef", "'nan'", "not a finite"]),
        (["--sweep.lr", "1e-4", "--sweep.learning_rate", "3e-4"],
         ["learning_rate is swept twice", "--sweep.lr 0.0001", "--sweep.learning_rate 0.0003"]),
        (["--sweep.gamma", "0.9", "0.9"], ["gamma=0.9 appears twice"]),
        (["--learning-rate", "5e-4", "--sweep.lr", "1e-4", "3e-4"],
         ["learning_rate is both set (--learning-rate 5e-4)", "--sweep.lr 0.0001 0.0003"]),
        (["--sweep."], ["--sweep. names no field"]),
    ],
)
def test_split_errors_name_field_and_value(argv, pieces):
    with pytest.raises(ValueError) as info:
        split_sweep_args(argv, PPOA2CConfig)
    message = str(info.value)
    assert "\n" not in message
    for piece in pieces:
        assert piece in message, (piece, message)


def test_static_error_lists_every_sweepable_field():
    with pytest.raises(ValueError) as info:
        split_sweep_args(["--sweep.num-steps", "8"], PPOA2CConfig)
    for name in traced_fields(PPOA2CConfig):
        assert name in str(info.value)


# ------------------------------------------------------------------------------------ expand_grid


def test_grid_is_a_cartesian_product_with_the_last_field_fastest():
    configs = expand_grid(BASE, {"lr": [1e-4, 3e-4, 1e-3], "ent_coef": (0.0, 0.01)})
    assert len(configs) == 6
    got = [(c.learning_rate, c.ent_coef) for c in configs]
    assert got == [(1e-4, 0.0), (1e-4, 0.01), (3e-4, 0.0), (3e-4, 0.01), (1e-3, 0.0),
                   (1e-3, 0.01)]
    for c in configs:  # everything else comes from the base
        assert dataclasses.replace(c, learning_rate=BASE.learning_rate,
                                   ent_coef=BASE.ent_coef) == BASE


def test_empty_grid_is_the_base():
    assert expand_grid(BASE, {}) == [BASE]


@pytest.mark.parametrize(
    "sweep, pieces",
    [
        ({"gamma": [0.9, 1.5]}, ["sweep setting 1 (gamma=1.5)", "gamma=1.5 must lie in [0, 1]"]),
        ({"lr": [1e-3], "max_grad_norm": [0.5, 0.0]},
         ["setting 1 (learning_rate=0.001, max_grad_norm=0)", "max_grad_norm=0.0"]),
        ({"num_envs": [4]}, ["cannot sweep num_envs", "4", "static field"]),
        ({"learning_rat": [1e-3]}, ["learning_rat", "did you mean learning_rate"]),
        ({"gamma": []}, ["gamma has no values"]),
        ({"lr": [1e-3], "learning_rate": [1e-4]}, ["learning_rate is swept twice"]),
    ],
)
def test_grid_errors_name_the_setting(sweep, pieces):
    with pytest.raises(ValueError) as info:
        expand_grid(BASE, sweep)
    for piece in pieces:
        assert piece in str(info.value), (piece, str(info.value))


# ------------------------------------------------------------------------------ stack_hyperparams


def test_stack_gives_float32_leaves_in_setting_order():
    configs = expand_grid(BASE, {"learning_rate": [1e-4, 7e-4], "gamma": [0.9, 0.99, 0.999]})
    hparams = stack_hyperparams(configs)
    assert isinstance(hparams, Hyperparams)
    for name, leaf in zip(Hyperparams._fields, hparams, strict=True):
        assert leaf.shape == (6,) and leaf.dtype == jnp.float32, name
        np.testing.assert_array_equal(
            leaf, np.array([getattr(c, name) for c in configs], np.float32), err_msg=name
        )
    np.testing.assert_array_equal(hparams.gamma, np.float32([0.9, 0.99, 0.999] * 2))


def test_stack_of_one_config():
    hparams = stack_hyperparams([BASE])
    assert hparams.learning_rate.shape == (1,)
    np.testing.assert_allclose(hparams.learning_rate, [BASE.learning_rate], rtol=1e-7)


@pytest.mark.parametrize(
    "change, pieces",
    [
        (dict(num_envs=8), ["configs[2].num_envs=8", "configs[0].num_envs=16",
                            "only traced fields may differ"]),
        (dict(network=NetworkConfig(hidden_sizes=(32,))),
         ["configs[2].network=", "hidden_sizes=(32,)", "only traced fields"]),
        (dict(anneal_lr=False), ["configs[2].anneal_lr=False", "anneal_lr=True"]),
    ],
)
def test_stack_rejects_static_differences(change, pieces):
    configs = [BASE, dataclasses.replace(BASE, learning_rate=1e-3),
               dataclasses.replace(BASE, **change)]
    with pytest.raises(ValueError) as info:
        stack_hyperparams(configs)
    for piece in pieces:
        assert piece in str(info.value), (piece, str(info.value))


def test_stack_rejects_empty_and_mixed_types():
    with pytest.raises(ValueError, match="empty"):
        stack_hyperparams([])

    @dataclasses.dataclass(frozen=True)
    class Other:
        learning_rate: float = 1e-3

        def hyperparams(self):
            return (jnp.float32(self.learning_rate),)

    with pytest.raises(ValueError, match=r"configs\[1\] is a Other but configs\[0\] is a PPOA2CC"):
        stack_hyperparams([BASE, Other()])
    with pytest.raises(ValueError, match=r"configs\[0\] is a dict"):
        stack_hyperparams([{"learning_rate": 1e-3}])


# --------------------------------------------------------------------------- labels, table, plot


def test_labels_are_compact():
    configs = expand_grid(BASE, {"lr": [3e-4, 1e-3], "ent_coef": [0.01]})
    assert setting_labels(configs, ["learning_rate", "ent_coef"]) == [
        "learning_rate=0.0003, ent_coef=0.01",
        "learning_rate=0.001, ent_coef=0.01",
    ]
    assert setting_labels([BASE], []) == ["base"]


def test_table_round_trips_through_csv(tmp_path):
    configs = expand_grid(BASE, {"lr": [1e-4, 7e-4], "gamma": [0.9]})
    names = ["learning_rate", "gamma"]
    evals = np.array([[10.0, 30.5, 20.25], [500.0, 487.5, 12.0]], np.float32)
    finals = np.array([[9.0, np.nan, 11.0], [np.nan, np.nan, np.nan]])
    path = tmp_path / "sub" / "sweep.csv"
    rows = write_table(path, configs, names, evals, final_train_returns=finals)

    with open(path, newline="") as f:
        read = list(csv.DictReader(f))
    assert len(read) == len(rows) == 2
    assert list(read[0]) == [
        "learning_rate", "gamma", "num_seeds", "eval_return_mean", "eval_return_median",
        "eval_return_min", "eval_return_max", "eval_return_std", "eval_return_per_seed",
        "final_train_return_mean",
    ]
    for h, row in enumerate(read):
        seeds = evals[h].astype(np.float64)
        assert float(row["learning_rate"]) == configs[h].learning_rate
        assert float(row["gamma"]) == 0.9
        assert int(row["num_seeds"]) == 3
        got = [float(row[f"eval_return_{s}"]) for s in ("mean", "median", "min", "max", "std")]
        want = [seeds.mean(), np.median(seeds), seeds.min(), seeds.max(), seeds.std()]
        np.testing.assert_allclose(got, want, rtol=1e-6)
        np.testing.assert_allclose(
            np.array(row["eval_return_per_seed"].split(), float), seeds, rtol=1e-6
        )
    assert float(read[0]["final_train_return_mean"]) == pytest.approx(10.0)
    assert np.isnan(float(read[1]["final_train_return_mean"]))
    assert rows[1]["eval_return_median"] == pytest.approx(487.5)


def test_table_without_final_returns_and_shape_errors(tmp_path):
    rows = write_table(tmp_path / "t.csv", [BASE], [], np.array([[1.0, 3.0]]))
    assert "final_train_return_mean" not in rows[0]
    assert rows[0]["eval_return_mean"] == 2.0
    with pytest.raises(ValueError, match=r"eval_returns has shape \(2,\).*\[1, K\]"):
        write_table(tmp_path / "t.csv", [BASE], [], np.array([1.0, 3.0]))
    with pytest.raises(ValueError, match=r"final_train_returns has shape \(1, 3\)"):
        write_table(tmp_path / "t.csv", [BASE], [], np.ones((1, 2)),
                    final_train_returns=np.ones((1, 3)))


def test_plot_writes_a_png(tmp_path):
    steps = np.arange(1, 11) * 128
    returns = np.random.default_rng(0).uniform(0, 500, (2, 3, 10))
    returns[0, :, 0] = np.nan  # no episode finished yet: a gap, not an error
    returns[1, 1, 4] = np.nan
    path = tmp_path / "plots" / "curves.png"
    plot_learning_curves(path, steps, returns, ["lr=1e-4", "lr=7e-4"], title="CartPole")
    data = path.read_bytes()
    assert len(data) > 1000
    assert data[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_checks_shapes(tmp_path):
    with pytest.raises(ValueError, match=r"returns has shape \(2, 10\)"):
        plot_learning_curves(tmp_path / "a.png", np.arange(10), np.zeros((2, 10)), ["a", "b"])
    with pytest.raises(ValueError, match="labels has 1 entries but returns has 2 settings"):
        plot_learning_curves(tmp_path / "a.png", np.arange(10), np.zeros((2, 1, 10)), ["a"])
    assert not (tmp_path / "a.png").exists()


# ----------------------------------------------------------------------------------- one compile


def test_settings_and_seeds_train_in_one_compile():
    num_seeds = 2
    configs = expand_grid(BASE, {"lr": [1e-4, 1e-3, 1e-2]})
    trainer = make_train(configs[0])
    # Agent a = h * num_seeds + k: setting h, seed k (the same seeds for every setting).
    hparams = jax.tree.map(lambda x: jnp.repeat(x, num_seeds), stack_hyperparams(configs))
    keys = jnp.tile(jax.random.split(jax.random.PRNGKey(0), num_seeds), (len(configs), 1))
    other = jax.tree.map(lambda x: x * 0.5, hparams)  # prepared now: eager ops compile too

    compiles = []

    def on_event(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(duration)

    train = jax.jit(jax.vmap(trainer.train))
    jax.monitoring.register_event_duration_secs_listener(on_event)
    try:
        state, metrics = train(keys, hparams)
        jax.block_until_ready(state)
        # Other values of the traced fields reuse the program.
        jax.block_until_ready(train(keys, other))
    finally:
        jax.monitoring.unregister_event_duration_listener(on_event)
    assert len(compiles) == 1
    assert train._cache_size() == 1

    assert metrics["episode_count"].shape == (6, BASE.num_updates)
    params = np.asarray(jax.vmap(lambda p: ravel_pytree(p)[0])(state.params))
    assert np.all(np.isfinite(params))
    change = lambda a, b: float(np.max(np.abs(params[a] - params[b])))
    # Seed 0 under three learning rates: three different results.
    assert min(change(0, 2), change(0, 4), change(2, 4)) > 1e-3
    # One setting, two seeds: different results.
    assert min(change(0, 1), change(2, 3), change(4, 5)) > 1e-3
