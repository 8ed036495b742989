"""acjax.envs.gymnasium: names and specs, termination vs truncation with the true final
observation, Sync == Async, action clipping, workers that die, hang or raise, evaluation."""

import ast
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces

from acjax.envs import gymnasium as gx
from acjax.envs.gymnasium import EnvWorkerError, HostVectorEnv
from acjax.envs.gymnax import EnvSpec

CARTPOLE = "gymnasium:CartPole-v1"
PENDULUM = "gymnasium:Pendulum-v1"


class ToyEnv(gymnasium.Env):
    """A one-number environment whose step can sleep or raise (for the worker tests).

    It lives in this module and is registered with the entry point "<this module>:ToyEnv", so
    workers started by "fork" (the registry is inherited) and by "spawn" (the parent passes the
    registered `EnvSpec`; the child imports this module from the entry point) both build it.
    """

    def __init__(self, action_space=None, sleep_s: float = 0.0, fail_at: int | None = None,
                 only_in: int | None = None):
        if only_in is not None and os.getpid() != only_in:
            raise RuntimeError("this toy env builds in its parent process only")
        self.observation_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = spaces.Discrete(2) if action_space is None else action_space
        self.sleep_s = sleep_s
        self.fail_at = fail_at
        self.steps = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.steps = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.steps += 1
        if self.fail_at is not None and self.steps >= self.fail_at:
            raise RuntimeError(f"toy failure at step {self.steps}")
        time.sleep(self.sleep_s)
        return np.full(1, 0.5, np.float32), 1.0, False, False, {}


def _register(env_id, **kwargs):
    gymnasium.register(env_id, entry_point=f"{__name__}:ToyEnv", kwargs=kwargs,
                       max_episode_steps=1000, disable_env_checker=True)
    return gx.PREFIX + env_id


TOY = _register("AcjaxToy-v0")
SLEEPY = _register("AcjaxToySleepy-v0", sleep_s=60.0)
SLOW = _register("AcjaxToySlow-v0", sleep_s=20.0)
FAILING = _register("AcjaxToyFailing-v0", fail_at=2)
PARENT_ONLY = _register("AcjaxToyParentOnly-v0", only_in=os.getpid())
MULTI_DISCRETE = _register("AcjaxToyMultiDiscrete-v0", action_space=spaces.MultiDiscrete([2, 3]))
SHIFTED = _register("AcjaxToyShifted-v0", action_space=spaces.Discrete(3, start=1))
MATRIX = _register("AcjaxToyMatrix-v0", action_space=spaces.Box(-1.0, 1.0, (2, 2), np.float32))


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# ----------------------------------------------------------------------------------------------
# Names and specs
# ----------------------------------------------------------------------------------------------


def test_names():
    assert gx.is_gymnasium_name(CARTPOLE) and not gx.is_gymnasium_name("CartPole-v1")
    assert gx.gymnasium_id(CARTPOLE) == "CartPole-v1"
    gx.check_gymnasium_name(CARTPOLE)
    gx.check_gymnasium_name(PENDULUM)
    with pytest.raises(ValueError, match=r"env='gymnasium:CartPol-v1' is not a registered "
                       r"gymnasium id; close matches: 'CartPole-v1', 'CartPole-v0'"):
        gx.check_gymnasium_name("gymnasium:CartPol-v1")
    with pytest.raises(ValueError, match=r"env='CartPole-v1' is not a gymnasium name; write it "
                       r"as 'gymnasium:<id>'"):
        gx.gymnasium_id("CartPole-v1")
    with pytest.raises(ValueError, match=r"names module 'no_such_module_acjax'"):
        gx.check_gymnasium_name("gymnasium:no_such_module_acjax:CartPole-v1")
    # "module:id" imports the module first, as gymnasium.make does
    gx.check_gymnasium_name(f"gymnasium:{__name__}:AcjaxToy-v0")


@pytest.mark.parametrize(("env", "pattern"), [
    ("gymnasium:Blackjack-v1", (  # Discrete actions, Tuple observations
     r"env='gymnasium:Blackjack-v1' has observation space Tuple\(Discrete\(32\).*acjax supports"
     r" Box observation spaces only.*FlattenObservation")),
    ("gymnasium:FrozenLake-v1", r"observation space Discrete\(16\); acjax supports Box"),
    (MULTI_DISCRETE, (r"has action space MultiDiscrete\(\[2 3\]\); acjax supports Discrete "
                      r"\(starting at 0\) and 1-D Box action spaces")),
    (SHIFTED, (r"has action space Discrete\(3, start=1\), which starts at 1; acjax supports "
               r"Discrete action spaces starting at 0")),
    (MATRIX, r"has a Box action space of shape \(2, 2\); acjax supports flat \(1-D\)"),
])
def test_unsupported_spaces_are_refused_by_name(env, pattern):
    with pytest.raises(ValueError, match=pattern):
        gx.check_gymnasium_name(env)
    with pytest.raises(ValueError, match=pattern):
        HostVectorEnv(env, 2, asynchronous=True)  # refused before any worker starts


def test_missing_gymnasium_and_failing_construction_are_value_errors(monkeypatch):
    with pytest.raises(ValueError, match=r"make\('CartPole-v1', no_such_kwarg=1\) raised "
                       r"TypeError"):
        gx.host_env_spec(CARTPOLE, no_such_kwarg=1)
    monkeypatch.setitem(sys.modules, "gymnasium", None)  # `import gymnasium` raises ImportError
    with pytest.raises(ValueError, match=r"env='gymnasium:CartPole-v1' needs gymnasium, which "
                       r"is not installed; install it with: pip install 'acjax\[gymnasium\]'"):
        gx.check_gymnasium_name(CARTPOLE)


def test_importing_the_module_imports_neither_gymnasium_nor_jax_itself():
    out = subprocess.run(
        [sys.executable, "-c",
         "import sys, acjax.envs.gymnasium; assert 'gymnasium' not in sys.modules"],
        capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    tree = ast.parse(pathlib.Path(gx.__file__).read_text())
    imported = {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import)
                for a in n.names}
    imported |= {n.module.split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom)}
    assert not {"jax", "gymnasium", "gymnax"} & imported, imported


def test_host_env_spec():
    cartpole = gx.host_env_spec(CARTPOLE)
    assert cartpole == EnvSpec(CARTPOLE, (4,), True, 2, None, None, 500)
    pendulum = gx.host_env_spec(PENDULUM)
    assert pendulum == EnvSpec(PENDULUM, (3,), False, 1, (-2.0,), (2.0,), 200)
    assert gx.host_env_spec(TOY).max_episode_steps == 1000
    with HostVectorEnv(CARTPOLE, 2, max_episode_steps=5) as envs:
        assert envs.spec == cartpole._replace(max_episode_steps=5)
        assert envs.num_envs == 2 and envs.worker_pids == []


def test_arguments_are_checked():
    with pytest.raises(ValueError, match=r"num_envs=0 must be an integer >= 1"):
        HostVectorEnv(CARTPOLE, 0)
    for timeout in (0, -1.0, float("inf")):
        with pytest.raises(ValueError, match=rf"timeout={timeout!r} must be a positive number"):
            HostVectorEnv(CARTPOLE, 1, timeout=timeout)
    with HostVectorEnv(CARTPOLE, 2) as envs:
        with pytest.raises(RuntimeError, match=r"call reset\(\) before step\(\)"):
            envs.step(np.zeros(2, np.int32))
        envs.reset()
        with pytest.raises(ValueError, match=r"must be integers of shape \(2,\) for Discrete\(2\)"):
            envs.step(np.zeros(3, np.int32))
        with pytest.raises(ValueError, match=r"actions=\[0, 2\] must lie in \[0, 2\)"):
            envs.step(np.array([0, 2]))
    with HostVectorEnv(PENDULUM, 2) as envs:
        envs.reset()
        with pytest.raises(ValueError, match=r"must have shape \(2, 1\)"):
            envs.step(np.zeros(2, np.float32))
    envs.close()  # idempotent
    with pytest.raises(RuntimeError, match="is closed"):
        envs.reset()


# ----------------------------------------------------------------------------------------------
# Termination, truncation and the true final observation
# ----------------------------------------------------------------------------------------------


def test_pendulum_truncates_every_200_steps_with_the_true_final_observation():
    """Pendulum never terminates: 3 envs truncate together at steps 200 and 400; `final_obs`
    there is the episode's true last observation (a plain gymnasium env stepped by hand with the
    same seed and actions), `obs` the next episode's first, and the statistics match."""
    num_envs, seed, steps = 3, 7, 401
    rng = np.random.default_rng(0)
    actions = rng.uniform(-3.0, 3.0, (steps, num_envs, 1)).astype(np.float32)  # some clipped
    refs = [gymnasium.make("Pendulum-v1") for _ in range(num_envs)]
    ref_obs = np.stack([r.reset(seed=seed + i)[0] for i, r in enumerate(refs)])
    ref_rewards = np.zeros(num_envs)
    with HostVectorEnv(PENDULUM, num_envs, seed=seed) as envs:
        np.testing.assert_array_equal(envs.reset(), ref_obs)
        for t in range(1, steps + 1):
            step = envs.step(actions[t - 1])
            ends = t % 200 == 0
            for i, ref in enumerate(refs):
                obs, reward, terminated, truncated, _ = ref.step(np.clip(actions[t - 1, i], -2, 2))
                ref_rewards[i] += reward
                assert not terminated and truncated == ends
                assert step.reward[i] == np.float32(reward)
                np.testing.assert_array_equal(step.final_obs[i], obs)
                if ends:
                    obs, _ = ref.reset()
                np.testing.assert_array_equal(step.obs[i], obs)
            assert not step.terminated.any()
            np.testing.assert_array_equal(step.truncated, np.full(num_envs, ends))
            assert step.obs.dtype == step.final_obs.dtype == step.reward.dtype == np.float32
            assert step.episode_length.dtype == np.int32
            if ends:
                assert not np.array_equal(step.final_obs, step.obs)
                np.testing.assert_array_equal(step.episode_length, [200] * num_envs)
                np.testing.assert_allclose(step.episode_return, ref_rewards, rtol=1e-6)
                assert (step.episode_return < 0).all()
                ref_rewards[:] = 0.0
            else:
                np.testing.assert_array_equal(step.episode_length, 0)
                np.testing.assert_array_equal(step.episode_return, 0.0)
    for ref in refs:
        ref.close()


def test_cartpole_terminates_with_the_final_observation_outside_the_thresholds():
    with HostVectorEnv(CARTPOLE, 2, seed=3) as envs:
        obs = envs.reset()
        for t in range(1, 100):
            step = envs.step(np.ones(2, np.int64))  # always push right: falls within ~10 steps
            if step.terminated.any():
                break
            obs = step.obs
        assert step.terminated.all(), "both carts fall at the same step from near-zero starts"
        assert not step.truncated.any()
        x, theta = step.final_obs[:, 0], step.final_obs[:, 2]
        assert ((np.abs(x) > 2.4) | (np.abs(theta) > 12 * 2 * np.pi / 360)).all()
        assert (np.abs(step.obs) <= 0.05).all()  # the next episode's first observation
        assert not np.array_equal(step.final_obs, step.obs)
        np.testing.assert_array_equal(step.episode_length, [t, t])
        np.testing.assert_array_equal(step.episode_return, [float(t)] * 2)
        assert (np.abs(obs[:, 2]) < 12 * 2 * np.pi / 360).all()  # still up one step before


def test_cartpole_time_limit_truncates_and_termination_wins_a_tie():
    # alternating pushes keep the pole up: the 5-step limit truncates without terminating
    with HostVectorEnv(CARTPOLE, 2, seed=0, max_episode_steps=5) as envs:
        envs.reset()
        for t in range(1, 11):
            step = envs.step(np.full(2, t % 2))
            assert not step.terminated.any()
            np.testing.assert_array_equal(step.truncated, [t % 5 == 0] * 2)
            np.testing.assert_array_equal(step.episode_length, [5 * (t % 5 == 0)] * 2)
    # constant pushes terminate at some step T; with a time limit of exactly T, gymnasium's
    # TimeLimit sets both flags at T, and acjax reports `terminated` only
    with HostVectorEnv(CARTPOLE, 1, seed=3) as envs:
        envs.reset()
        for t in range(1, 100):
            if envs.step(np.ones(1, np.int64)).terminated[0]:
                break
    with HostVectorEnv(CARTPOLE, 1, seed=3, max_episode_steps=t) as envs:
        envs.reset()
        for _ in range(t - 1):
            step = envs.step(np.ones(1, np.int64))
            assert not (step.terminated | step.truncated).any()
        step = envs.step(np.ones(1, np.int64))
        assert step.terminated[0] and not step.truncated[0]
        assert step.episode_length[0] == t


# ----------------------------------------------------------------------------------------------
# Sync == Async, clipping
# ----------------------------------------------------------------------------------------------


def _trajectory(env, actions, **kwargs):
    with HostVectorEnv(env, actions.shape[1], seed=11, **kwargs) as envs:
        first = envs.reset()
        return first, [envs.step(a) for a in actions]


@pytest.mark.parametrize("env", [CARTPOLE, PENDULUM])
def test_sync_and_async_give_identical_trajectories(env):
    rng = np.random.default_rng(1)
    if env == CARTPOLE:
        actions = rng.integers(0, 2, (120, 3))
    else:
        actions = rng.uniform(-2.5, 2.5, (210, 3, 1)).astype(np.float32)
    sync_first, sync = _trajectory(env, actions)
    async_first, asyn = _trajectory(env, actions, asynchronous=True, timeout=10.0)
    np.testing.assert_array_equal(sync_first, async_first)
    for a, b in zip(sync, asyn, strict=True):
        for field, x, y in zip(a._fields, a, b, strict=True):
            np.testing.assert_array_equal(x, y, err_msg=field)
    assert any(s.terminated.any() or s.truncated.any() for s in sync)  # crossed an episode end


def test_spawned_workers_match_and_build_envs_registered_by_the_parent():
    """With "spawn" the workers import gymnasium afresh: they build CartPole from its registered
    spec, and the toy env, registered only by this test module, from its entry point."""
    actions = np.random.default_rng(2).integers(0, 2, (30, 1))
    _, sync = _trajectory(CARTPOLE, actions)
    _, spawned = _trajectory(CARTPOLE, actions, asynchronous=True, context="spawn")
    for a, b in zip(sync, spawned, strict=True):
        np.testing.assert_array_equal(a.obs, b.obs)
    with HostVectorEnv(TOY, 1, asynchronous=True, context="spawn") as envs:
        envs.reset()
        assert envs.step(np.zeros(1, np.int64)).reward[0] == 1.0


def test_continuous_actions_are_clipped_to_the_bounds():
    with HostVectorEnv(PENDULUM, 2, seed=5) as a, HostVectorEnv(PENDULUM, 2, seed=5) as b:
        np.testing.assert_array_equal(a.reset(), b.reset())
        for _ in range(3):
            x = a.step(np.array([[100.0], [-100.0]], np.float32))
            y = b.step(np.array([[2.0], [-2.0]], np.float32))
            np.testing.assert_array_equal(x.obs, y.obs)
            np.testing.assert_array_equal(x.reward, y.reward)


# ----------------------------------------------------------------------------------------------
# Workers that die, hang or raise
# ----------------------------------------------------------------------------------------------


def test_close_ends_healthy_workers():
    envs = HostVectorEnv(CARTPOLE, 2, asynchronous=True, timeout=None)  # waits without a bound
    envs.reset()
    envs.step(np.zeros(2, np.int64))
    pids = envs.worker_pids
    assert len(pids) == 2 and not any(_gone(pid) for pid in pids)
    envs.close()
    envs.close()
    assert all(_gone(pid) for pid in pids)
    with pytest.raises(RuntimeError, match="is closed"):
        envs.step(np.zeros(2, np.int64))


def test_a_killed_worker_raises_env_worker_error_and_close_returns():
    envs = HostVectorEnv(CARTPOLE, 2, asynchronous=True, timeout=3.0)
    envs.reset()
    envs.step(np.zeros(2, np.int64))
    pids = envs.worker_pids
    os.kill(pids[1], signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(EnvWorkerError) as caught:
        envs.step(np.zeros(2, np.int64))
    assert time.monotonic() - start < 10
    message = str(caught.value)
    assert f"worker 1 (pid {pids[1]})" in message and "SIGKILL" in message, message
    assert "AsyncVectorEnv('CartPole-v1', 2)" in message and "the run stops" in message
    with pytest.raises(EnvWorkerError, match="unusable after an earlier failure"):
        envs.step(np.zeros(2, np.int64))
    start = time.monotonic()
    envs.close()
    envs.close()
    assert time.monotonic() - start < 5
    assert all(_gone(pid) for pid in pids)


def test_a_worker_killed_during_a_step_surfaces_before_the_timeout():
    envs = HostVectorEnv(SLOW, 2, asynchronous=True, timeout=60.0)  # each step sleeps 20 s
    try:
        envs.reset()
        pids = envs.worker_pids
        killer = threading.Timer(0.5, os.kill, (pids[0], signal.SIGKILL))
        killer.start()
        start = time.monotonic()
        with pytest.raises(EnvWorkerError, match=rf"worker 0 \(pid {pids[0]}\) died \(exit "
                           r"code -9, SIGKILL\)"):
            envs.step(np.zeros(2, np.int64))
        assert time.monotonic() - start < 10  # not the 60 s timeout, nor worker 1's 20 s step
        killer.join()
        start = time.monotonic()
        envs.close()  # worker 1 is still sleeping in its step: terminated, not awaited
        assert time.monotonic() - start < 5
        assert all(_gone(pid) for pid in pids)
    finally:
        envs.close()


def test_a_hung_worker_raises_env_worker_error_after_the_timeout():
    with HostVectorEnv(SLEEPY, 2, asynchronous=True, timeout=2.0) as envs:
        envs.reset()
        pids = envs.worker_pids
        start = time.monotonic()
        with pytest.raises(EnvWorkerError, match=r"worker 0 \(pid \d+\), worker 1 \(pid \d+\) "
                           r"of AsyncVectorEnv\('AcjaxToySleepy-v0', 2\) gave no answer to "
                           r"step\(\) within 2 s"):
            envs.step(np.zeros(2, np.int64))
        elapsed = time.monotonic() - start
        assert 1.9 < elapsed < 6
        start = time.monotonic()
    assert time.monotonic() - start < 5  # __exit__ closed it without waiting on the sleepers
    assert all(_gone(pid) for pid in pids)


def test_a_worker_that_cannot_build_its_env_fails_the_start():
    start = time.monotonic()
    with pytest.raises(EnvWorkerError, match=r"AsyncVectorEnv\('AcjaxToyParentOnly-v0', 2\) "
                       r"failed to start its workers: worker \d \(pid \d+\) died \(exit code 1"):
        HostVectorEnv(PARENT_ONLY, 2, asynchronous=True)
    assert time.monotonic() - start < 10


@pytest.mark.filterwarnings("ignore::UserWarning")  # gymnasium logs the worker's traceback
def test_a_raising_worker_raises_env_worker_error():
    with HostVectorEnv(FAILING, 2, asynchronous=True, timeout=10.0) as envs:
        envs.reset()
        envs.step(np.zeros(2, np.int64))
        with pytest.raises(EnvWorkerError, match=r"worker [01] \(pid \d+\).*raised "
                           r"RuntimeError: toy failure at step 2"):
            envs.step(np.zeros(2, np.int64))
    with HostVectorEnv(FAILING, 2) as envs:  # the synchronous case reports it the same way
        envs.reset()
        envs.step(np.zeros(2, np.int64))
        with pytest.raises(EnvWorkerError, match=r"SyncVectorEnv\('AcjaxToyFailing-v0', 2\)"
                           r"\.step\(\) raised RuntimeError: toy failure at step 2"):
            envs.step(np.zeros(2, np.int64))


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------


def test_evaluate_host():
    returns, lengths = gx.evaluate_host(
        CARTPOLE, lambda obs: np.zeros(obs.shape[0], np.int64), 4, seed=0)
    assert returns.dtype == np.float32 and lengths.dtype == np.int32
    assert returns.shape == lengths.shape == (4,)
    assert (lengths < 100).all() and (lengths > 0).all()
    np.testing.assert_array_equal(returns, lengths.astype(np.float32))
    returns, lengths = gx.evaluate_host(
        PENDULUM, lambda obs: np.zeros((obs.shape[0], 1), np.float32), 2, seed=0)
    np.testing.assert_array_equal(lengths, [200, 200])
    assert (returns < 0).all()
    # cut short: the running episodes count with what they have so far
    returns, lengths = gx.evaluate_host(
        CARTPOLE, lambda obs: np.zeros(obs.shape[0], np.int64), 2, seed=0, max_steps=3)
    np.testing.assert_array_equal(lengths, [3, 3])
    np.testing.assert_array_equal(returns, [3.0, 3.0])
    with pytest.raises(ValueError, match=r"num_episodes=0 must be an integer >= 1"):
        gx.evaluate_host(CARTPOLE, lambda obs: obs, 0, seed=0)
