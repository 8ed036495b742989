"""The off-policy trainers (SAC, TD3, DDPG): checks, one iteration, the replay contents, target
networks, TD3's delayed actor, and the command line with its run directory, resume and
load_policy."""

import dataclasses
import functools
import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acjax import sac, td3
from acjax.agents.offpolicy import loop as offpolicy
from acjax.agents.offpolicy.presets import preset_names as offpolicy_preset_names
from acjax.envs import env_spec, import_gymnax, make_env
from acjax.networks import OffPolicyNetworkConfig
from acjax.sac import SACConfig, sac_preset
from acjax.td3 import TD3Config, td3_preset

REPO = pathlib.Path(__file__).resolve().parents[3]
SMALL = OffPolicyNetworkConfig(hidden_sizes=(16, 16))
# 8 iterations of 4 envs x 2 steps, 3 gradient steps each from the third (learning_starts 16).
TINY = dict(
    env="Pendulum-v1", total_timesteps=64, num_envs=4, num_steps=2, gradient_steps=3,
    learning_starts=16, buffer_size=64, batch_size=16, network=SMALL,
)


def tiny(algo: str, **kw):
    if algo == "sac":
        return dataclasses.replace(SACConfig(**TINY), **kw)
    extra = dict(policy_delay=1, target_noise=0.0, exploration_noise="ou") if algo == "ddpg" \
        else {}
    return dataclasses.replace(TD3Config(algo=algo, **TINY, **extra), **kw)


def make_train(config):
    return (sac if isinstance(config, SACConfig) else td3).make_train(config)


@functools.cache
def compiled(config):
    """`(trainer, jit(init), jit(update))`, built once per configuration for all tests."""
    trainer = make_train(config)
    return trainer, jax.jit(trainer.init), jax.jit(trainer.update)


# ----------------------------------------------------------------------------------------------
# Checks before anything compiles
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def no_compile(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("compiled before validating")

    import_gymnax()  # gymnax decorates its functions with jax.jit at import time
    monkeypatch.setattr(jax, "jit", refuse)


DISCRETE = "SAC/TD3/DDPG need a continuous (Box) action space; CartPole-v1 has Discrete(2)"


@pytest.mark.parametrize("module", [sac, td3])
def test_discrete_env_is_refused_before_compiling(module, no_compile, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--env", "CartPole-v1", "--run-dir", str(tmp_path / "r")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert DISCRETE in err and err.count("\n") == 1 and "Traceback" not in err
    with pytest.raises(ValueError, match=DISCRETE.replace("(", r"\(").replace(")", r"\)")):
        module.make_train(tiny("sac" if module is sac else "td3", env="CartPole-v1"))


@pytest.mark.parametrize(
    "algo, kw, pattern",
    [
        ("sac", dict(batch_size=128), r"batch_size=128 is larger than buffer_size=64"),
        ("td3", dict(buffer_size=4, batch_size=4),
         r"buffer_size=4 cannot hold one iteration's transitions \(num_envs \* num_steps = 8\)"),
        ("sac", dict(tau=0.0), r"tau=0\.0 must lie in \(0, 1\]"),
        ("td3", dict(tau=1.5), r"tau=1\.5 must lie in \(0, 1\]"),
        ("sac", dict(gamma=1.5), r"gamma=1\.5 must lie in \[0, 1\]"),
        ("td3", dict(policy_delay=0), r"policy_delay=0 must be an integer >= 1"),
        ("sac", dict(actor_lr=0.0), r"actor_lr=0\.0 must be a positive number"),
        ("td3", dict(critic_lr=-1e-3), r"critic_lr=-0\.001 must be a positive number"),
        ("sac", dict(alpha_lr=0.0), r"alpha_lr=0\.0 must be a positive number"),
        ("sac", dict(init_alpha=0.0), r"init_alpha=0\.0 must be a positive number"),
        ("sac", dict(num_envs=0), r"num_envs=0 must be a positive integer"),
        ("td3", dict(gradient_steps=0), r"gradient_steps=0 must be a positive integer"),
        ("sac", dict(total_timesteps=4), r"total_timesteps=4 is smaller than one iteration"),
        ("td3", dict(learning_starts=64), r"learning_starts=64 leaves no env step"),
        ("td3", dict(exploration_noise_std=-0.1), r"exploration_noise_std=-0\.1 must be >= 0"),
        ("td3", dict(ou_theta=0.0), r"ou_theta=0\.0 must lie in \(0, 1\]"),
        ("ddpg", dict(policy_delay=2), r"algo='ddpg' .* policy_delay=2; set --policy-delay 1"),
        ("ddpg", dict(target_noise=0.2), r"target_noise=0\.2; set --target-noise 0"),
        ("sac", dict(max_grad_norm=0.0), r"max_grad_norm=0\.0 must be a positive number"),
        ("sac", dict(network=OffPolicyNetworkConfig(hidden_sizes=(16, 0))),
         r"network\.hidden_sizes=\(16, 0\) has a non-positive width"),
        ("td3", dict(env="Pendulum-v2"),
         r"env='Pendulum-v2' is not a gymnax environment; did you mean 'Pendulum-v1'"),
    ],
)
def test_bad_config_raises_before_compiling(algo, kw, pattern, no_compile):
    with pytest.raises(ValueError, match=pattern):
        make_train(tiny(algo, **kw))


def test_presets_are_valid_and_split_environments_are_refused():
    for env, algo in offpolicy_preset_names():
        config = sac_preset(env) if algo == "sac" else td3_preset(env, algo)
        assert (config.env, config.algo) == (env, algo)
        config.validate()
    for config in (sac_preset("MountainCarContinuous-v0"), td3_preset("Reacher-misc", "ddpg")):
        config.validate()  # the general defaults fit any Box environment
    assert td3_preset("Pendulum-v1").policy_delay == 2
    assert td3_preset("Pendulum-v1", "ddpg").exploration_noise == "ou"
    with pytest.raises(ValueError, match=r"algo='ddpg': python -m acjax.sac trains 'sac'"):
        sac_preset("Pendulum-v1", "ddpg")
    from acjax.run.parallel import Layout

    config = tiny("sac")
    config.check_layout(Layout(4, 2, "agents"))
    with pytest.raises(ValueError, match=r"SAC keeps each agent's replay buffer on one device"):
        config.check_layout(Layout(1, 2, "envs"))
    with pytest.raises(ValueError, match=r"--device-split agents"):
        sac.make_train(config, axis_name="data")


def test_hyperparams_are_the_traced_fields():
    from acjax.config import traced_fields

    assert set(sac.Hyperparams._fields) == set(traced_fields(SACConfig)) == {
        "gamma", "tau", "actor_lr", "critic_lr", "alpha_lr"}
    assert set(td3.Hyperparams._fields) == set(traced_fields(TD3Config)) == {
        "gamma", "tau", "actor_lr", "critic_lr", "exploration_noise_std", "ou_theta",
        "target_noise", "target_noise_clip"}
    config = tiny("td3")
    assert config.num_updates == 8 and config.hyperparams().tau.dtype == jnp.float32


# ----------------------------------------------------------------------------------------------
# The jitted iteration
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ["sac", "td3", "ddpg"])
def test_warm_up_then_one_iteration_learns_and_stays_finite(algo):
    trainer, init, update = compiled(tiny(algo))
    state = init(jax.random.PRNGKey(0))
    # Twice 8 env steps of uniformly random actions in [-1, 1], no updates.
    warm, metrics = update(state)
    assert int(warm.gradient_step) == 0 and float(metrics["critic_loss"]) == 0.0
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(warm.params)):
        np.testing.assert_array_equal(a, b)
    stored = np.asarray(warm.replay.data.action[:8])
    assert np.all(np.abs(stored) <= 1.0) and np.std(stored) > 0.3
    # Reaching learning_starts = 16 env steps: the first gradient steps.
    new, metrics = update(warm)
    expected = {"critic_loss", "q_mean", "actor_loss", "episode_return_sum", "episode_count",
                "episode_length_sum", "critic_grad_norm", "actor_grad_norm", "buffer_size"}
    expected |= {"alpha", "alpha_loss", "entropy"} if algo == "sac" else {"actor_updates"}
    assert expected <= set(metrics), expected - set(metrics)
    for name, value in metrics.items():
        assert np.all(np.isfinite(np.asarray(value))), name
    assert float(metrics["critic_loss"]) > 0.0
    assert float(metrics["buffer_size"]) == 16 and int(new.replay.size) == 16
    assert int(new.gradient_step) == 3 and int(new.update_step) == 2
    assert not np.allclose(jax.tree.leaves(warm.params.actor)[0],
                           jax.tree.leaves(new.params.actor)[0])
    critics = jax.tree.leaves(new.params.critic)[0].shape[0]
    assert critics == (1 if algo == "ddpg" else 2)
    if algo == "sac":
        assert float(new.params.log_alpha) != 0.0  # tuned away from log(init_alpha = 1)
    actions = trainer.act(new, jnp.zeros((5, 3)), jax.random.PRNGKey(1), False)
    assert actions.shape == (5, 1) and np.all(np.abs(np.asarray(actions)) <= 2.0)


def _pendulum_successor(obs, env_action):
    """Pendulum-v1's dynamics (gymnax, default parameters): next observation of `obs[..., 3]`."""
    theta = np.arctan2(obs[..., 1], obs[..., 0])
    u = np.clip(env_action[..., 0], -2.0, 2.0)
    thdot = np.clip(obs[..., 2] + (3 * 10.0 / 2 * np.sin(theta) + 3.0 * u) * 0.05, -8.0, 8.0)
    theta = theta + thdot * 0.05
    return np.stack([np.cos(theta), np.sin(theta), thdot], axis=-1)


def test_buffer_stores_the_true_next_observation_on_truncation():
    trainer, init, update = compiled(tiny("sac"))
    state = init(jax.random.PRNGKey(4))
    # Episodes near Pendulum's 200-step limit: env 0 is cut at the iteration's second step,
    # env 1 at its first; each then resets to a fresh observation.
    inner = state.env.env_state.env_state
    inner = inner.replace(time=jnp.asarray([198, 199, 100, 0], inner.time.dtype))
    env_state = state.env.env_state.replace(env_state=inner)
    state = state._replace(env=state.env._replace(env_state=env_state))
    state, metrics = update(state)
    assert float(metrics["episode_count"]) == 2
    data = jax.tree.map(lambda x: np.asarray(x)[:8].reshape((2, 4) + x.shape[1:]),
                        state.replay.data)  # items were written time-major: [T, B, ...]
    assert not data.terminated.any()  # a time limit is not a terminal state
    env_action = np.asarray(offpolicy.rescale_actions(jnp.asarray(data.action), trainer.spec))
    np.testing.assert_allclose(data.next_obs, _pendulum_successor(data.obs, env_action),
                               atol=1e-4)  # every stored s' is the true successor of s
    following = np.concatenate([data.obs[1:], np.asarray(state.env.obs)[None]])  # [2, 4, 3]
    gap = np.max(np.abs(data.next_obs - following), axis=-1)
    cut = np.array([[False, True, False, False], [True, False, False, False]])
    assert np.all(gap[cut] > 1e-2) and np.all(gap[~cut] < 1e-6)  # where a reset came next


def _batch(key, n=32):
    k = jax.random.split(key, 4)
    obs = jax.random.normal(k[0], (n, 3))
    return offpolicy.Transition(
        obs, jax.random.uniform(k[1], (n, 1), minval=-1, maxval=1),
        jax.random.normal(k[2], (n,)), jnp.zeros((n,), bool), jax.random.normal(k[3], (n, 3)),
    )


def _shifted_targets(params):
    """The same parameters with targets that differ from the online networks."""
    params = params._replace(target_critic=jax.tree.map(lambda x: x + 1.0, params.target_critic))
    if hasattr(params, "target_actor"):
        params = params._replace(target_actor=jax.tree.map(lambda x: x - 1.0,
                                                           params.target_actor))
    return params


def _assert_polyak(old, new, tau, pairs):
    for online, target in pairs:
        expected = jax.tree.map(lambda o, t: tau * o + (1 - tau) * t, getattr(new, online),
                                getattr(old, target))
        moved = jax.tree.leaves(getattr(new, target))
        for got, want in zip(moved, jax.tree.leaves(expected)):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        assert not np.allclose(moved[0], jax.tree.leaves(getattr(old, target))[0])


def test_sac_target_critics_move_by_polyak_averaging():
    config = tiny("sac", tau=0.25)
    spec = env_spec(*make_env("Pendulum-v1"), "Pendulum-v1")
    agent = sac.make_agent(config, spec)
    hp = config.hyperparams()
    params, opt_state = agent.init(jax.random.PRNGKey(0), jnp.zeros(3), jnp.zeros(1), hp)
    params = _shifted_targets(params)
    new, _, _ = jax.jit(agent.learn)(params, opt_state, _batch(jax.random.PRNGKey(1)),
                                     jax.random.PRNGKey(2), jnp.int32(0), jnp.int32(0), hp)
    _assert_polyak(params, new, 0.25, [("critic", "target_critic")])


def test_td3_actor_and_targets_update_only_every_policy_delay_steps_by_polyak():
    config = tiny("td3", gradient_steps=2, tau=0.25)  # 2 steps: the index decides
    spec = env_spec(*make_env("Pendulum-v1"), "Pendulum-v1")
    agent = td3.make_agent(config, spec)
    hp = config.hyperparams()
    params, opt_state = agent.init(jax.random.PRNGKey(0), jnp.zeros(3), jnp.zeros(1), hp)
    params = _shifted_targets(params)
    learn = jax.jit(agent.learn)
    batch = _batch(jax.random.PRNGKey(1))
    for step, due in [(0, False), (1, True), (2, False), (3, True)]:
        new, _, metrics = learn(params, opt_state, batch, jax.random.PRNGKey(step),
                                jnp.int32(step), jnp.int32(step), hp)
        assert float(metrics["actor_updates"]) == float(due)
        for name in ("actor", "target_actor", "target_critic"):
            same = all(np.array_equal(a, b) for a, b in zip(
                jax.tree.leaves(getattr(params, name)), jax.tree.leaves(getattr(new, name))))
            assert same != due, (step, name)
        assert not np.array_equal(jax.tree.leaves(params.critic)[0],
                                  jax.tree.leaves(new.critic)[0])  # critics: every step
        if due:
            _assert_polyak(params, new, 0.25,
                           [("critic", "target_critic"), ("actor", "target_actor")])
    # Whole iterations of 3 gradient steps: the run's step count decides, so the actor's
    # updates carry over between iterations (with 2 or 4 steps, the step index does).
    _, init, update = compiled(tiny("td3"))
    state = init(jax.random.PRNGKey(0))
    counts = []
    for _ in range(4):
        state, metrics = update(state)
        counts.append(int(metrics["actor_updates"]))
    assert counts == [0, 1, 2, 1] and int(state.gradient_step) == 9


# ----------------------------------------------------------------------------------------------
# The command line, its run directory, resume and load_policy
# ----------------------------------------------------------------------------------------------


def _env(cache: pathlib.Path) -> dict:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": path, "ACJAX_CACHE_DIR": str(cache)}


def _cli(module, *args, cache, cwd):
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=cwd,
        env=_env(cache), timeout=300, check=False,
    )


# 2 agents, each 32 iterations of 4 envs x 4 steps and 4 gradient steps, in 4 chunks of 128
# env steps.
CLI_TINY = ["--env", "Pendulum-v1", "--total-timesteps", "512", "--num-envs", "4",
            "--num-steps", "4", "--gradient-steps", "4", "--learning-starts", "64",
            "--buffer-size", "512", "--batch-size", "32", "--network.hidden-sizes", "16", "16",
            "--num-reports", "4", "--eval-episodes", "2", "--no-progress", "--num-seeds", "2",
            "--seed", "3"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.getbasetemp() / "jax-cache"  # shared by the session's test modules


@pytest.fixture(scope="module")
def straight(tmp_path_factory, cache) -> pathlib.Path:
    """A SAC run of 2 seeds (3 and 4) x 512 env steps in one process."""
    run_dir = tmp_path_factory.mktemp("offpolicy") / "straight"
    out = _cli("acjax.sac", *CLI_TINY, "--run-dir", str(run_dir), cache=cache,
               cwd=run_dir.parent)
    assert out.returncode == 0, out.stderr[-3000:]
    return run_dir


def test_cli_many_seeds_write_the_same_summary_as_ppo(straight, cache, tmp_path_factory):
    summary = json.loads((straight / "summary.json").read_text())
    assert summary["algo"] == "sac" and summary["num_seeds"] == 2
    assert len(summary["eval_return_per_seed"]) == 2 and summary["env_steps"] == 512
    assert summary["aggregate_env_steps"] == 1024
    assert json.loads((straight / "config.json").read_text())["config_type"] == "SACConfig"
    header = (straight / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[:5] == ["env_steps", "updates", "wall_seconds", "steps_per_second",
                          "episode_return"]
    assert {"critic_loss", "actor_loss", "alpha", "q_mean"} <= set(header)
    # test_checkpoint.py's PPO run when this session made it, else a tiny one.
    ppo_dir = tmp_path_factory.getbasetemp() / "tiny-run"
    if not (ppo_dir / "summary.json").exists():
        ppo_dir = tmp_path_factory.mktemp("ppo") / "run"
        out = _cli("acjax.ppo_a2c", "--env", "CartPole-v1", "--total-timesteps", "128",
                   "--num-envs", "4", "--num-steps", "16", "--num-reports", "1",
                   "--eval-episodes", "2", "--no-progress", "--run-dir", str(ppo_dir),
                   cache=cache, cwd=ppo_dir.parent)
        assert out.returncode == 0, out.stderr[-3000:]
    assert set(summary) == set(json.loads((ppo_dir / "summary.json").read_text()))


def test_stop_and_resume_in_new_processes_is_bit_identical(straight, cache, tmp_path):
    run_dir = tmp_path / "resumed"
    first = _cli("acjax.sac", *CLI_TINY, "--run-dir", str(run_dir), "--stop-after-steps", "256",
                 cache=cache, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "stopped" in first.stdout and not (run_dir / "summary.json").exists()
    second = _cli("acjax.sac", "--run-dir", str(run_dir), "--resume", "--no-progress",
                  cache=cache, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    resumed = json.loads((run_dir / "summary.json").read_text())
    reference = json.loads((straight / "summary.json").read_text())
    assert resumed["resumes"] == 1 and resumed["num_seeds"] == 2
    assert resumed["params_fingerprint"] == reference["params_fingerprint"]
    assert resumed["eval_return_per_seed"] == reference["eval_return_per_seed"]


def test_sigterm_stops_with_a_checkpoint_and_resumes_bit_identically(
    straight, cache, tmp_path, interrupted
):
    import signal

    run_dir = tmp_path / "preempted"
    rc, out, err, _ = interrupted(["acjax.sac", *CLI_TINY, "--run-dir", str(run_dir)],
                                  env=_env(cache), cwd=tmp_path, signals=[signal.SIGTERM])
    assert rc == 143 and "Traceback" not in err, err[-3000:]
    assert f"resume with: python -m acjax.sac --run-dir {run_dir} --resume" in out
    assert not (run_dir / "summary.json").exists()
    again = _cli("acjax.sac", "--run-dir", str(run_dir), "--resume", cache=cache, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = json.loads((run_dir / "summary.json").read_text())
    reference = json.loads((straight / "summary.json").read_text())
    assert resumed["params_fingerprint"] == reference["params_fingerprint"]


def test_load_policy_rebuilds_the_greedy_policy(straight):
    from acjax.agents.common import evaluate_policy
    from acjax.run.checkpoint import load_policy
    from acjax.run.parallel import agent_keys

    summary = json.loads((straight / "summary.json").read_text())
    env, env_params = make_env("Pendulum-v1")
    _, eval_keys = agent_keys(np.array([3, 4]))
    for agent in (0, 1):
        policy = load_policy(straight, agent=agent)
        actions = policy(jnp.zeros((5, 3), jnp.float32), jax.random.PRNGKey(0))
        assert actions.shape == (5, 1) and np.all(np.abs(np.asarray(actions)) <= 2.0)
        noisy = policy(jnp.zeros((5, 3), jnp.float32), jax.random.PRNGKey(0),
                       deterministic=False)
        assert not np.allclose(noisy, actions)
        # The greedy policy replays the run's own final evaluation (same keys, same episodes).
        returns, _ = jax.jit(
            lambda k, p=policy: evaluate_policy(p, env, env_params, k, num_episodes=2,
                                                max_steps=200)
        )(eval_keys[agent])
        assert float(np.mean(returns)) == pytest.approx(
            summary["eval_return_per_seed"][agent], rel=1e-5)


def test_cli_help_shows_the_preset_and_every_field(capsys):
    with pytest.raises(SystemExit) as exit_info:
        td3.main(["--env", "Pendulum-v1", "--algo", "ddpg", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for field in dataclasses.fields(TD3Config):
        if field.name != "network":
            assert "--" + field.name.replace("_", "-") in text, field.name
    assert "--network.hidden-sizes" in text and "(default: ou)" in text


def test_cli_refuses_splitting_environments_over_devices(no_compile, monkeypatch, tmp_path,
                                                        capsys):
    monkeypatch.setattr(jax, "local_device_count", lambda: 3)
    with pytest.raises(SystemExit) as exit_info:
        sac.main(["--num-seeds", "3", "--device-split", "envs", "--cpu-devices", "1",
                  "--num-envs", "3", "--run-dir", str(tmp_path / "x")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "SAC keeps each agent's replay buffer on one device" in err and "Traceback" not in err


def test_sgd_step_flops_pick_one_execution_thread_for_small_networks():
    from acjax.cpu import sizing
    from acjax.run.flags import parse_args

    def flops(config_cls, preset, argv):
        config, _ = parse_args(config_cls, preset, argv, "")
        return sizing.offpolicy_step_flops(config)

    def sac_flops(argv):
        return flops(sac.SACConfig, sac.sac_preset, argv)

    def td3_flops(argv):
        return flops(td3.TD3Config, td3.td3_preset, argv)

    # Pendulum presets: batch 256, 64x64 networks (one hidden product 64 * 64 = 4096).
    # SAC, two critics: 6 * 256 * (4096 + 2 * 2 * 4096); DDPG, one critic: 6 * 256 * 3 * 4096.
    assert sac_flops(["--env", "Pendulum-v1"]) == 6 * 256 * 5 * 4096 == 31_457_280
    assert td3_flops(["--env", "Pendulum-v1", "--algo", "ddpg"]) == 18_874_368
    assert sac_flops(["--env", "Pendulum-v1", "--batch-size", "1024"]) == 4 * 31_457_280
    # The general defaults (256 x 256) are large: JAX's default pool.
    big = td3_flops(["--env", "Pendulum-v1", "--network.hidden-sizes", "256", "256"])
    assert big == 6 * 256 * 5 * 256 * 256 > sizing.SMALL_STEP_FLOPS
    assert sac_flops(["--env", "Pendulum-v1"]) <= sizing.SMALL_STEP_FLOPS
    with pytest.raises(ValueError, match=r"algo='nope': python -m acjax.sac trains 'sac'"):
        sac_flops(["--algo", "nope"])  # the preset refuses it before anything is sized


def test_plot_labels_runs_of_different_algorithms_by_name():
    from acjax.run.plot import group_runs

    def run(algo, seed, **fields):
        return {"config": {"algo": algo, "env": "Pendulum-v1", "seed": seed, **fields}}

    index, labels = group_runs([
        run("sac", 0, init_alpha=1.0), run("td3", 0, policy_delay=2),
        run("td3", 0, policy_delay=1), run("sac", 1, init_alpha=1.0),
    ])
    assert index == [0, 1, 2, 0]
    assert labels == ["SAC Pendulum-v1", "TD3 Pendulum-v1 (policy_delay=2)",
                      "TD3 Pendulum-v1 (policy_delay=1)"]


@pytest.mark.parametrize(
    "env, algo",
    [("MountainCarContinuous-v0", "td3"), ("PointRobot-misc", "sac"), ("Reacher-misc", "ddpg"),
     ("Swimmer-misc", "sac")],
)
def test_every_gymnax_continuous_env_trains(env, algo):
    """Pendulum-v1 is covered above; the other gymnax Box environments train and evaluate."""
    base = sac.SACConfig() if algo == "sac" else td3.TD3Config(
        algo=algo, **({"policy_delay": 1, "target_noise": 0.0} if algo == "ddpg" else {}))
    config = dataclasses.replace(
        base, env=env, total_timesteps=256, num_envs=4, learning_starts=64, buffer_size=256,
        batch_size=32, gradient_steps=2, network=OffPolicyNetworkConfig(hidden_sizes=(16, 16)),
    )
    trainer = (sac if algo == "sac" else td3).make_train(config, num_reports=1)
    # gymnax's Swimmer-misc dynamics broadcast [2] against [5, 2] (implicit rank promotion,
    # which conftest.py turns into an error for acjax's own code).
    with jax.numpy_rank_promotion("allow" if env == "Swimmer-misc" else "raise"):
        state, metrics = jax.jit(trainer.train)(jax.random.PRNGKey(0))
        returns, lengths = trainer.evaluate(state, jax.random.PRNGKey(1), 2)
    assert trainer.spec.num_actions == (1 if env.startswith("Mountain") else 2)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(state.params))
    learned = np.asarray(metrics["critic_loss"])[-((256 - 64) // 4):]  # iterations that learned
    assert learned.size and np.isfinite(learned).all() and (learned > 0).all()
    assert np.isfinite(np.asarray(returns)).all() and (np.asarray(lengths) > 0).all()
