"""Brax environments (`brax/<name>`, the optional `acjax[brax]` extra) behind gymnax's API.

The first tests need no Brax: they hide it (or never touch it) and check the errors and that
gymnax names never import it. Every other test needs Brax and is skipped cleanly without it
(CI does not install it): `pip install -e '.[test,brax]'` to run them.
"""

import dataclasses
import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acjax import envs, sac
from acjax.envs import brax as brax_envs
from acjax.networks import OffPolicyNetworkConfig

REPO = pathlib.Path(__file__).resolve().parents[2]
HAVE_BRAX = importlib.util.find_spec("brax") is not None
# Not `pytest.importorskip("brax")` at module level: that would also skip the tests above that
# check what happens *without* Brax.
needs_brax = pytest.mark.skipif(
    not HAVE_BRAX, reason="Brax is not installed: pip install 'acjax[brax]'"
)
NO_BRAX = "env='brax/ant' needs Brax: pip install 'acjax[brax]'"


# ----------------------------------------------------------------------------------------------
# Without Brax
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def brax_missing(monkeypatch):
    """Makes `import brax` fail as it does where Brax is not installed."""
    monkeypatch.setitem(sys.modules, "brax", None)


def test_brax_name_without_brax_says_how_to_install(brax_missing):
    with pytest.raises(ValueError, match=f"^{re.escape(NO_BRAX)}$"):
        envs.check_env_name("brax/ant")
    with pytest.raises(ValueError, match="needs Brax"):
        envs.make_env("brax/ant")
    with pytest.raises(ValueError, match="needs Brax"):
        dataclasses.replace(sac.SACConfig(), env="brax/ant").validate()
    envs.check_env_name("Pendulum-v1")  # gymnax names are unaffected


def test_cli_without_brax_exits_with_the_install_command(brax_missing, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        sac.main(["--env", "brax/ant", "--run-dir", str(tmp_path / "r")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert NO_BRAX in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_brax_names():
    assert brax_envs.is_brax_name("brax/ant")
    assert not brax_envs.is_brax_name("Pendulum-v1")
    assert not brax_envs.is_brax_name("ant")


def test_gymnax_envs_never_import_brax():
    code = (
        "import sys, acjax.envs as e, acjax.sac as s, dataclasses\n"
        "env, params = e.make_env('Pendulum-v1')\n"
        "e.env_spec(env, params, 'Pendulum-v1')\n"
        "dataclasses.replace(s.SACConfig(), env='Pendulum-v1').validate()\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('brax', 'mujoco'))\n"
        "assert not loaded, loaded\n"
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH"))
                                         if p)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]


# ----------------------------------------------------------------------------------------------
# Names, construction and spaces (no compilation)
# ----------------------------------------------------------------------------------------------


@needs_brax
def test_unknown_brax_names_get_close_matches():
    with pytest.raises(ValueError, match=r"env='brax/antt' is not a Brax environment; "
                                         r"did you mean 'brax/ant'"):
        envs.check_env_name("brax/antt")
    with pytest.raises(ValueError, match=r"did you mean 'brax/halfcheetah'"):
        envs.make_env("brax/half_cheetah")
    with pytest.raises(ValueError, match=r"choose one of: .*brax/inverted_pendulum"):
        envs.check_env_name("brax/zzzzzzzzzzzz")
    for name in ("brax/ant", "brax/halfcheetah", "brax/inverted_pendulum"):
        envs.check_env_name(name)


@needs_brax
def test_bad_construction_arguments_name_the_field():
    with pytest.raises(ValueError, match=r"backend='physx' is not a Brax physics backend"):
        envs.make_env("brax/ant", backend="physx")
    with pytest.raises(ValueError, match=r"episode_length=0 must be a positive integer"):
        envs.make_env("brax/ant", episode_length=0)
    with pytest.raises(ValueError, match=r"env='brax/swimmer' cannot be built with "
                                         r"backend='mjx'.*backend='generalized'"):
        envs.make_env("brax/swimmer", backend="mjx")


@needs_brax
@pytest.mark.parametrize(
    "name, obs_dim, act_dim", [("brax/inverted_pendulum", 4, 1), ("brax/ant", 27, 8)]
)
def test_env_spec_reads_brax_spaces(name, obs_dim, act_dim):
    env, params = envs.make_env(name)
    spec = envs.env_spec(env, params, name)
    assert spec == envs.EnvSpec(name, (obs_dim,), False, act_dim, (-1.0,) * act_dim,
                                (1.0,) * act_dim, brax_envs.DEFAULT_EPISODE_LENGTH)
    assert env.backend == brax_envs.DEFAULT_BACKEND and env.num_actions == act_dim
    assert env.observation_space(params).dtype == jnp.float32
    short, short_params = envs.make_env(name, episode_length=50)
    assert envs.env_spec(short, short_params, name).max_episode_steps == 50
    assert envs.make_env("brax/swimmer")[0].backend == "generalized"  # its only backend


# ----------------------------------------------------------------------------------------------
# Stepping: shapes, termination vs truncation, auto-reset, vmap + jit
# ----------------------------------------------------------------------------------------------

STEPS = 40


@pytest.fixture(scope="module")
def pendulum_runs():
    """Three inverted pendulums stepped side by side for STEPS steps in one jitted vmap:

    0: no force, time limit 5 (episodes end by truncation);
    1: full force to one side, time limit 1000 (the pole falls: termination);
    2: no force, time limit 1000, another reset key (its pole falls later than 1's).
    """
    env, _ = envs.make_env("brax/inverted_pendulum")
    params = brax_envs.BraxEnvParams(max_steps_in_episode=jnp.array([5, 1000, 1000]))
    actions = jnp.broadcast_to(jnp.array([0.0, 1.0, 0.0])[:, None, None], (3, STEPS, 1))
    keys = jax.random.split(jax.random.PRNGKey(0), 3)

    def run(key, actions, params):
        reset_key, step_key = jax.random.split(key)
        obs0, state = env.reset(reset_key, params)

        def step(state, inputs):
            key, action = inputs
            obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)
            out = (obs, reward, terminated, truncated, info["final_observation"],
                   info["episode_return"], info["episode_length"])
            return state, out

        _, outs = jax.lax.scan(step, state, (jax.random.split(step_key, STEPS), actions))
        return obs0, outs

    obs0, outs = jax.jit(jax.vmap(run))(keys, actions, params)
    names = ("obs", "reward", "terminated", "truncated", "final_obs", "ep_return", "ep_length")
    return env, keys, jax.device_get(obs0), dict(zip(names, jax.device_get(outs)))


@needs_brax
def test_reset_and_step_shapes_and_dtypes(pendulum_runs):
    _, _, obs0, out = pendulum_runs
    assert obs0.shape == (3, 4) and obs0.dtype == np.float32
    assert out["obs"].shape == out["final_obs"].shape == (3, STEPS, 4)
    assert out["obs"].dtype == out["final_obs"].dtype == np.float32
    for name in ("reward", "ep_return"):
        assert out[name].shape == (3, STEPS) and out[name].dtype == np.float32
    for name in ("terminated", "truncated"):
        assert out[name].shape == (3, STEPS) and out[name].dtype == np.bool_
    assert out["ep_length"].dtype == np.int32
    assert np.all(np.isfinite(out["obs"])) and np.all(out["reward"] == 1.0)


@needs_brax
def test_time_limit_truncates_and_auto_resets(pendulum_runs):
    _, _, _, out = pendulum_runs
    trunc, term = out["truncated"][0], out["terminated"][0]
    ends = np.flatnonzero(trunc)
    np.testing.assert_array_equal(ends, np.arange(4, STEPS, 5))  # steps 5, 10, ...
    assert not term.any()
    np.testing.assert_array_equal(out["ep_length"][0][ends], 5)
    np.testing.assert_allclose(out["ep_return"][0][ends], 5.0)
    for t in ends:
        # The returned observation starts the next episode; the final one ends this one.
        assert not np.allclose(out["final_obs"][0, t], out["obs"][0, t])
        assert np.max(np.abs(out["obs"][0, t])) <= 0.01  # Brax's reset noise
    live = np.flatnonzero(~trunc)
    np.testing.assert_array_equal(out["final_obs"][0, live], out["obs"][0, live])


@needs_brax
def test_falling_pole_terminates_without_truncation(pendulum_runs):
    _, _, _, out = pendulum_runs
    term, trunc = out["terminated"][1], out["truncated"][1]
    assert term.any() and not trunc.any()
    t = int(np.flatnonzero(term)[0])
    assert abs(out["final_obs"][1, t, 1]) > 0.2  # the pole's angle left [-0.2, 0.2]
    assert np.max(np.abs(out["obs"][1, t])) <= 0.01  # auto-reset
    assert int(out["ep_length"][1, t]) == t + 1
    assert not out["truncated"][2].any()  # (unpushed, its pole falls too, a little later)


@needs_brax
def test_vmapped_envs_match_single_env(pendulum_runs):
    env, keys, obs0, _ = pendulum_runs
    assert not np.allclose(obs0[0], obs0[2])  # independent resets
    single, _ = jax.jit(env.reset)(jax.random.split(keys[2])[0], env.default_params)
    np.testing.assert_allclose(single, obs0[2], rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------------------------
# Training: SAC end to end, in-process and from the command line
# ----------------------------------------------------------------------------------------------

TINY_NET = OffPolicyNetworkConfig(hidden_sizes=(16, 16))


@needs_brax
def test_sac_trains_on_brax_inverted_pendulum():
    config = dataclasses.replace(
        sac.SACConfig(), env="brax/inverted_pendulum", total_timesteps=256, num_envs=4,
        num_steps=4, gradient_steps=2, learning_starts=64, buffer_size=256, batch_size=32,
        network=TINY_NET,
    )
    trainer = sac.make_train(config)
    state, metrics = jax.jit(trainer.train)(jax.random.PRNGKey(0))
    leaves = jax.tree.leaves(state.params)
    assert leaves and all(bool(jnp.all(jnp.isfinite(x))) for x in leaves)
    assert float(jnp.sum(metrics["episode_count"])) > 0  # random actions topple the pole
    lengths = metrics["episode_length_sum"] / jnp.maximum(metrics["episode_count"], 1.0)
    assert bool(jnp.all(lengths <= brax_envs.DEFAULT_EPISODE_LENGTH))


@needs_brax
def test_cli_sac_on_brax_writes_a_summary(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "ACJAX_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH"))
                                         if p)}
    out = subprocess.run(
        [sys.executable, "-m", "acjax.sac", "--env", "brax/inverted_pendulum",
         "--total-timesteps", "128", "--num-envs", "4", "--num-steps", "4",
         "--gradient-steps", "1", "--learning-starts", "32", "--buffer-size", "128",
         "--batch-size", "16", "--network.hidden-sizes", "16", "16", "--num-reports", "1",
         "--eval-episodes", "2", "--no-progress", "--run-dir", str(run_dir)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600, check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env"] == "brax/inverted_pendulum" and summary["env_steps"] == 128
    assert np.isfinite(summary["eval_return_mean"]) and summary["eval_length_mean"] >= 1
    assert "Failed to import warp" not in out.stdout
