"""The on-policy trainer: configuration checks, the jitted update, the CLI and its files."""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acjax import ppo_a2c
from acjax.agents.onpolicy.presets import preset_names
from acjax.envs import import_gymnax
from acjax.networks import NetworkConfig
from acjax.ppo_a2c import PPOA2CConfig, make_train, ppo_a2c_preset

TINY = dict(total_timesteps=2048, num_envs=4, num_steps=64, num_minibatches=2, update_epochs=2)


def tiny(**kw) -> PPOA2CConfig:
    return dataclasses.replace(PPOA2CConfig(**TINY), **kw)


@pytest.mark.parametrize(
    "kw, pattern",
    [
        (dict(env="CartPol-v1"), r"env='CartPol-v1'.*did you mean 'CartPole-v1'"),
        (dict(learning_rate=0.0), r"learning_rate=0\.0 must be a positive"),
        (dict(learning_rate=-1e-3), r"learning_rate=-0\.001"),
        (dict(gamma=1.5), r"gamma=1\.5 must lie in \[0, 1\]"),
        (dict(gae_lambda=-0.1), r"gae_lambda=-0\.1 must lie in \[0, 1\]"),
        (dict(num_minibatches=3), r"num_minibatches=3 does not divide num_steps=64"),
        (dict(num_envs=0), r"num_envs=0 must be a positive integer"),
        (dict(total_timesteps=100), r"total_timesteps=100 is smaller than one batch"),
        (dict(clip_eps=0.0), r"clip_eps=0\.0 must be positive"),
        (dict(max_grad_norm=0.0), r"max_grad_norm=0\.0"),
        (dict(ent_coef=-0.01), r"ent_coef=-0\.01 must be >= 0"),
        (dict(algo="a2c"), r"algo='a2c' takes one gradient step .* --update-epochs 1"),
        (dict(network=NetworkConfig(init_log_std=0.5)),
         r"network\.init_log_std=0\.5 applies to continuous .* Discrete\(2\)"),
        (dict(network=NetworkConfig(log_std="state_dependent")), r"network\.log_std="),
        (dict(network=NetworkConfig(detach_critic=True)), r"needs network\.shared=True"),
        (dict(network=NetworkConfig(hidden_sizes=(64, 0))), r"network\.hidden_sizes"),
        (dict(advantage="nstep", n_step=0), r"n_step=0 must be >= 1"),
    ],
)
def test_bad_config_raises_before_compiling(kw, pattern, monkeypatch):
    def no_compile(*a, **k):
        raise AssertionError("compiled before validating")

    import_gymnax()  # gymnax decorates its functions with jax.jit at import time

    monkeypatch.setattr(jax, "jit", no_compile)
    with pytest.raises(ValueError, match=pattern):
        make_train(tiny(**kw))


def test_every_preset_is_valid():
    for env, algo in preset_names():
        config = ppo_a2c_preset(env, algo)
        assert config.env == env and config.algo == algo
        config.validate()


def test_train_is_one_jittable_function_and_chunks_agree():
    config = tiny()
    trainer = make_train(config, num_reports=4)
    assert trainer.updates_per_chunk * 4 == config.num_updates == 8
    key = jax.random.PRNGKey(3)
    final, metrics = jax.jit(trainer.train)(key)
    assert metrics["loss"].shape == (config.num_updates,)
    assert int(final.update_step) == config.num_updates
    state = trainer.init(key)
    chunk = jax.jit(trainer.train_chunk)
    for _ in range(4):
        state, _ = chunk(state)
    diffs = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), final.params, state.params)
    assert max(jax.tree.leaves(diffs)) < 1e-5


@pytest.mark.parametrize(
    "kw",
    [
        dict(algo="a2c", update_epochs=1, num_minibatches=1, advantage="nstep", n_step=3),
        dict(algo="a2c", update_epochs=1, num_minibatches=1, optimizer="rmsprop"),
        dict(clip_value=True, normalize_observations=True, scale_rewards=True),
        dict(network=NetworkConfig(shared=True, detach_critic=True)),
        dict(env="Pendulum-v1", network=NetworkConfig(log_std="state_dependent")),
        dict(env="Breakout-MinAtar", network=NetworkConfig(hidden_sizes=(32,))),
    ],
)
def test_variants_run_and_stay_finite(kw):
    trainer = make_train(tiny(**kw))
    state, metrics = jax.jit(trainer.train)(jax.random.PRNGKey(0))
    for name, value in metrics.items():
        assert np.all(np.isfinite(np.asarray(value))), name
    returns, lengths = jax.jit(trainer.evaluate, static_argnums=2)(state, jax.random.PRNGKey(1), 3)
    assert returns.shape == (3,) and np.all(np.asarray(lengths) >= 1)


def test_hyperparams_are_traced_values():
    config = tiny()
    trainer = make_train(config)
    hp = config.hyperparams()
    assert set(hp._fields) == {
        "learning_rate", "gamma", "gae_lambda", "clip_eps", "value_clip_eps", "ent_coef",
        "vf_coef", "max_grad_norm",
    }
    # One compile, different learning rates give different results.
    train = jax.jit(trainer.train)
    key = jax.random.PRNGKey(0)
    a, _ = train(key, hp._replace(learning_rate=jnp.float32(1e-4)))
    b, _ = train(key, hp._replace(learning_rate=jnp.float32(1e-2)))
    assert train._cache_size() == 1
    leaf_a, leaf_b = jax.tree.leaves(a.params)[0], jax.tree.leaves(b.params)[0]
    assert not np.allclose(leaf_a, leaf_b)


def test_learning_rate_anneals_to_zero():
    config = tiny(anneal_lr=True)
    trainer = make_train(config)
    state = trainer.init(jax.random.PRNGKey(0))
    total = config.num_updates * config.update_epochs * config.num_minibatches
    schedule_count = jax.tree.leaves(state.opt_state)  # counts start at zero
    assert any(np.asarray(x).dtype == np.int32 for x in schedule_count)
    opt = ppo_a2c.make_optimizer(config, config.hyperparams())
    grads = jax.tree.map(jnp.ones_like, state.params)
    opt_state = opt.init(state.params)
    for _ in range(total):
        _, opt_state = opt.update(grads, opt_state, state.params)
    updates, _ = opt.update(grads, opt_state, state.params)
    assert max(float(jnp.max(jnp.abs(u))) for u in jax.tree.leaves(updates)) == 0.0


REPO = str(pathlib.Path(__file__).resolve().parents[3])


def _cli(*args, cwd):
    path = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": path}
    return subprocess.run(
        [sys.executable, "-m", "acjax.ppo_a2c", *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=300, check=False,
    )


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    for args, needle in [
        (["--env", "CartPol-v1"], "did you mean 'CartPole-v1'"),
        (["--learning-rate", "-1"], "learning_rate=-1.0"),
        (["--num-minibatches", "5"], "num_minibatches=5"),
        (["--network.init-log-std", "0.3"], "continuous"),
    ]:
        out = _cli(*args, "--run-dir", str(tmp_path / "r"), cwd=tmp_path)
        assert out.returncode == 2, out.stderr
        assert "Traceback" not in out.stderr
        assert needle in out.stderr
        assert not (tmp_path / "r" / "summary.json").exists()


def test_cli_help_documents_every_flag(tmp_path):
    out = _cli("--env", "Pendulum-v1", "--help", cwd=tmp_path)
    assert out.returncode == 0
    text = out.stdout
    for field in dataclasses.fields(PPOA2CConfig):
        if field.name != "network":
            assert "--" + field.name.replace("_", "-") in text, field.name
    for field in dataclasses.fields(NetworkConfig):
        assert "--network." + field.name.replace("_", "-") in text, field.name
    assert "--run-dir" in text and "--eval-episodes" in text
    # The Pendulum preset's values are the defaults shown.
    assert "500000" in text


def test_cli_writes_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    out = _cli(
        "--env", "CartPole-v1", "--total-timesteps", "4096", "--num-envs", "8",
        "--num-steps", "64", "--run-dir", str(run_dir), "--eval-episodes", "3",
        "--num-reports", "4", "--no-compilation-cache", cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("algo", "env", "seed", "env_steps", "wall_seconds", "compile_seconds",
                "steps_per_second", "eval_return_mean", "eval_return_std", "eval_episodes"):
        assert key in summary, key
    assert summary["env_steps"] == 4096 and summary["eval_episodes"] == 3
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["num_envs"] == 8 and config["config_type"] == "PPOA2CConfig"
    lines = (run_dir / "metrics.csv").read_text().strip().splitlines()
    assert lines[0].startswith("env_steps,updates,wall_seconds,steps_per_second,episode_return")
    assert len(lines) == 1 + 4
    # The same run directory is never overwritten.
    again = _cli("--run-dir", str(run_dir), "--total-timesteps", "4096", cwd=tmp_path)
    assert again.returncode == 2 and "already holds files" in again.stderr
    assert json.loads((run_dir / "summary.json").read_text()) == summary


def test_the_cpu_settings_disable_the_stalling_xla_scheduler(monkeypatch):
    import acjax.cpu

    # Importing acjax changes nothing (tests/test_layering.py); the command lines call this.
    monkeypatch.setenv("XLA_FLAGS", "--xla_foo=1")
    assert acjax.cpu.apply()["scheduler_flag"]
    assert os.environ["XLA_FLAGS"] == (
        "--xla_foo=1 --xla_cpu_enable_concurrency_optimized_scheduler=false")
    assert not acjax.cpu.apply()["scheduler_flag"]  # once only
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_concurrency_optimized_scheduler=true")
    acjax.cpu.apply()  # the user's own choice stays
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_enable_concurrency_optimized_scheduler=true"


def test_cli_many_seeds_in_one_call_report_each_seed(tmp_path):
    run_dir = tmp_path / "seeds"
    common = ["--total-timesteps", "4096", "--num-envs", "8", "--num-steps", "64",
              "--eval-episodes", "2", "--num-reports", "2", "--no-compilation-cache"]
    out = _cli("--num-seeds", "3", "--seed", "5", "--run-dir", str(run_dir), *common, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    per_seed = summary["eval_return_per_seed"]
    assert summary["num_seeds"] == 3 and len(per_seed) == 3
    assert summary["aggregate_env_steps"] == 3 * summary["env_steps"]
    assert summary["eval_return_mean"] == pytest.approx(np.mean(per_seed))
    assert summary["eval_return_min"] == pytest.approx(min(per_seed))
    # Seed 6 of the batch is the same agent as a single run with --seed 6.
    single_dir = tmp_path / "single"
    out = _cli("--seed", "6", "--run-dir", str(single_dir), *common, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    single = json.loads((single_dir / "summary.json").read_text())
    assert single["eval_return_per_seed"][0] == pytest.approx(per_seed[1], abs=1e-3)
    bad = _cli("--num-seeds", "0", "--run-dir", str(tmp_path / "x"), cwd=tmp_path)
    assert bad.returncode == 2 and "num_seeds=0" in bad.stderr


def test_config_round_trips_through_json_and_rejects_unknown_fields():
    from acjax.config import config_from_dict, config_to_dict, static_fields, traced_fields

    config = ppo_a2c_preset("Breakout-MinAtar", "ppo")
    data = json.loads(json.dumps(config_to_dict(config)))
    assert config_from_dict(PPOA2CConfig, data) == config
    with pytest.raises(ValueError, match=r"no field\(s\) \['num_actors'\]"):
        config_from_dict(PPOA2CConfig, {**data, "num_actors": 3})
    assert "learning_rate" in traced_fields(PPOA2CConfig)
    assert "num_envs" in static_fields(PPOA2CConfig) and "num_envs" not in traced_fields(
        PPOA2CConfig
    )


def test_a_new_agent_is_an_on_policy_agent_in_the_shared_loop():
    """The seam a new on-policy algorithm plugs into (docs/architecture.md): an agent with
    A2C's loss under another name trains exactly as A2C does, and its own checks run before
    anything is built."""
    from acjax.agents.onpolicy import a2c
    from acjax.agents.onpolicy.loop import OnPolicyAgent
    from acjax.agents.onpolicy.loop import make_train as make_onpolicy_train

    def refuse_rmsprop(config):
        if config.optimizer == "rmsprop":
            raise ValueError("optimizer='rmsprop': vpg trains with adam; pass --optimizer adam")

    vpg = OnPolicyAgent("vpg", a2c.AGENT.loss, refuse_rmsprop)
    config = tiny(algo="a2c", update_epochs=1, num_minibatches=1, total_timesteps=1024)
    key = jax.random.PRNGKey(5)
    ours = jax.jit(make_onpolicy_train(dataclasses.replace(config, algo="vpg"), vpg).train)(key)
    reference = jax.jit(make_train(config).train)(key)
    for a, b in zip(jax.tree.leaves(ours[0].params), jax.tree.leaves(reference[0].params),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="vpg trains with adam"):
        make_onpolicy_train(dataclasses.replace(config, algo="vpg", optimizer="rmsprop"), vpg)
    with pytest.raises(ValueError, match=r"algo='vpg' is not one of 'a2c', 'ac', 'ppo', 'reinforce'"):
        make_train(dataclasses.replace(config, algo="vpg"))  # not in the registry
