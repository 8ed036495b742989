"""acjax PPO runners of `benchmarks/peers.py` (each runs in its own child process).

* `train_single`: `acjax.cpu.backend.jit(trainer.train)` (`jax.jit` with acjax's compile
  options) compiled ahead of time, one seed; with a cache directory (`acjax-cache-cold` /
  `-warm`), `acjax.run.programs.compile_train` with JAX's compilation cache there;
* `train_vmap`: `acjax.cpu.backend.jit(jax.vmap(trainer.train))` over K seeds on one device;
* `train_cli`: K seeds the way `python -m acjax.ppo_a2c --num-seeds K` trains them: the CPU split
  into the command line's default number of XLA devices (one seed with large SGD steps: its
  environments split over them), `acjax.run.parallel.choose_layout` and
  `make_runner`, jitted chunks with the host between them;
* `train_zoo`: chunked training (`trainer.train_chunk`) that also records the time to solve.

Every runner times the run twice: the first call gives the time to result, a second call of the
already compiled program with other seeds gives the steady-state steps per second.

Every runner starts as acjax's command line does: `acjax.cpu.apply()` before JAX's backend
starts (importing acjax changes nothing in JAX), and its networks built with the dense layer the
command line passes, `acjax.cpu.dense.for_backend()` (the custom-VJP one on CPU).
"""

from __future__ import annotations

from _common import SolveClock, base_result, greedy_eval, since

STEADY_SEED_OFFSET = 10_000
"""Seeds of the second (steady-state) run: the first run's plus this."""


def make_config(cfg: dict, total_timesteps: int):
    """The workload's hyperparameters as an acjax `PPOA2CConfig` for CartPole-v1."""
    from acjax.networks import NetworkConfig
    from acjax.ppo_a2c import PPOA2CConfig

    return PPOA2CConfig(
        env="CartPole-v1",
        algo="ppo",
        total_timesteps=total_timesteps,
        num_envs=cfg["num_envs"],
        num_steps=cfg["num_steps"],
        update_epochs=cfg["update_epochs"],
        num_minibatches=cfg["num_minibatches"],
        learning_rate=cfg["learning_rate"],
        anneal_lr=cfg["anneal_lr"],
        gamma=cfg["gamma"],
        gae_lambda=cfg["gae_lambda"],
        clip_eps=cfg["clip_eps"],
        ent_coef=cfg["ent_coef"],
        vf_coef=cfg["vf_coef"],
        max_grad_norm=cfg["max_grad_norm"],
        clip_value=cfg.get("clip_value", False),
        value_clip_eps=cfg["clip_eps"],
        optimizer="adam",
        optimizer_eps=cfg["adam_eps"],
        normalize_observations=False,
        network=NetworkConfig(
            hidden_sizes=tuple(cfg["hidden_sizes"]), activation=cfg["activation"], shared=False
        ),
    )


def _notes(cfg: dict) -> list[str]:
    notes = []
    if cfg.get("anneal_clip"):
        notes.append("acjax keeps clip_eps constant (the reference anneals it linearly to 0)")
    return notes


def time_steady(res: dict, train, seed: int, steps: int) -> None:
    """Times a second call of the compiled `train(key)` with another seed: `steady_seconds`
    and `steady_steps_per_second` (`steps` env steps per call) go into `res`."""
    import time

    import jax

    t = time.perf_counter()
    other, _ = train(jax.random.PRNGKey(seed + STEADY_SEED_OFFSET))
    jax.block_until_ready(other)
    res["steady_seconds"] = time.perf_counter() - t
    res["steady_steps_per_second"] = steps / res["steady_seconds"]


def greedy_act_of(trainer):
    """`state -> (obs -> greedy action)` for `_common.greedy_eval`."""
    import jax

    key = jax.random.PRNGKey(0)  # unused: the greedy action draws nothing
    return lambda state: (lambda obs: trainer.act(state, obs, key, True))


def apply_cpu_settings() -> None:
    """The CPU settings every acjax command line starts with (`acjax.cpu.apply`: XLA's
    concurrency-optimised scheduler off, the straight-line threefry lowering); called first
    in every acjax runner, before anything starts JAX's backend."""
    import acjax.cpu

    acjax.cpu.apply()


def _cache_files(path: str | None) -> int | None:
    import pathlib

    if not path:
        return None
    return sum(1 for f in pathlib.Path(path).rglob("*") if f.is_file())


def train_single(spec: dict, t0: float) -> dict:
    apply_cpu_settings()
    res = base_result(spec)
    import jax

    from acjax.cpu import backend, dense
    from acjax.ppo_a2c import make_train

    cache_dir = spec.get("cache_dir")
    if cache_dir:
        from acjax.run.programs import enable_compilation_cache

        enable_compilation_cache(cache_dir)
    res["import_seconds"] = since(t0)

    t = since(t0)
    config = make_config(spec["config"], spec["total_timesteps"])
    trainer = make_train(config, dense=dense.for_backend())
    key = jax.random.PRNGKey(spec["seed"])
    res["setup_seconds"] = since(t0) - t

    files_before = _cache_files(cache_dir)
    t = since(t0)
    if cache_dir:
        # As a user with the compilation cache on: through acjax's saved programs, so that a
        # second run skips tracing and lowering as well as XLA.
        from acjax.run.programs import compile_train

        train, saved = compile_train(trainer, key)
    else:
        train = backend.jit(trainer.train).lower(key).compile()
    res["compile_seconds"] = since(t0) - t
    if cache_dir:
        files_after = _cache_files(cache_dir)
        res["compilation_cache"] = dict(
            dir=cache_dir, files_before=files_before, files_after=files_after,
            outcome="hit" if files_before and files_after == files_before else "miss",
            saved_program=saved.outcome,
        )

    t = since(t0)
    state, _ = train(key)
    jax.block_until_ready(state)
    res["train_seconds"] = since(t0) - t
    res["time_to_result_seconds"] = since(t0)
    steps = config.num_updates * config.batch_size
    res["env_steps"] = res["aggregate_env_steps"] = steps

    if spec.get("steady", True):
        time_steady(res, train, spec["seed"], steps)

    eval_key = jax.random.PRNGKey(spec["seed"] + 99)
    res["final_return"], res["final_return_min"] = greedy_eval(
        greedy_act_of(trainer), state, eval_key, spec["eval_episodes"]
    )
    returns, _ = jax.jit(trainer.evaluate, static_argnums=2)(
        state, eval_key, spec["eval_episodes"]
    )
    res["final_return_acjax_evaluate"] = float(returns.mean())
    res["num_devices"] = jax.local_device_count()
    res["notes"] += _notes(spec["config"])
    return res


def train_vmap(spec: dict, t0: float) -> dict:
    apply_cpu_settings()
    res = base_result(spec)
    import jax

    from acjax.cpu import backend, dense
    from acjax.ppo_a2c import make_train

    res["import_seconds"] = since(t0)

    t = since(t0)
    k = spec["num_seeds"]
    config = make_config(spec["config"], spec["total_timesteps"])
    trainer = make_train(config, dense=dense.for_backend())
    keys = jax.random.split(jax.random.PRNGKey(spec["seed"]), k)
    res["setup_seconds"] = since(t0) - t

    t = since(t0)
    train = backend.jit(jax.vmap(trainer.train)).lower(keys).compile()
    res["compile_seconds"] = since(t0) - t

    t = since(t0)
    state, _ = train(keys)
    jax.block_until_ready(state)
    res["train_seconds"] = since(t0) - t
    res["time_to_result_seconds"] = since(t0)
    steps = config.num_updates * config.batch_size
    res["env_steps"], res["aggregate_env_steps"] = steps, steps * k

    if spec.get("steady", True):
        other_keys = jax.random.split(jax.random.PRNGKey(spec["seed"] + STEADY_SEED_OFFSET), k)
        t = since(t0)
        other, _ = train(other_keys)
        jax.block_until_ready(other)
        res["steady_seconds"] = since(t0) - t
        res["steady_steps_per_second"] = steps * k / res["steady_seconds"]
        del other

    eval_keys = jax.random.split(jax.random.PRNGKey(spec["seed"] + 99), k)
    res["final_return"], res["final_return_min"] = greedy_eval(
        greedy_act_of(trainer), state, eval_keys, spec["eval_episodes"]
    )
    res["num_devices"] = 1
    res["layout"] = "jit(vmap(train)) on 1 device"
    res["notes"] += _notes(spec["config"])
    return res


def train_cli(spec: dict, t0: float) -> dict:
    """K seeds laid out as the command line lays them out (`acjax.run.loop.train_and_report`).

    The device count comes from the command line's own rule: `acjax.cpu.host.configure_devices`
    with K agents (and, for one seed, `acjax.cpu.sizing.data_parallel_devices` of the SGD step,
    as `onpolicy_lone_agent_devices` gives it) sets
    `XLA_FLAGS=--xla_force_host_platform_device_count=D` here, before JAX's backend starts (the
    parent removed any count from this process's environment).
    """
    import functools
    import os

    apply_cpu_settings()
    res = base_result(spec)
    k = spec["num_seeds"]
    from acjax.cpu import dense, host, sizing
    from acjax.run.options import RunOptions

    cfg = spec["config"]
    samples = cfg["num_envs"] * cfg["num_steps"] // cfg["num_minibatches"]
    options = RunOptions(num_seeds=k, eval_episodes=spec["eval_episodes"])
    host.configure_devices(
        cpu_devices=options.cpu_devices, num_agents=k, num_devices=options.num_devices,
        num_processes=options.num_processes, device_split=options.device_split,
        lone_agent_devices=sizing.data_parallel_devices(samples, cfg["num_envs"]),
    )
    import jax
    import numpy as np

    from acjax.ppo_a2c import make_train
    from acjax.run import parallel

    res["import_seconds"] = since(t0)

    t = since(t0)
    config = make_config(spec["config"], spec["total_timesteps"])
    layout = parallel.choose_layout(
        num_agents=k, num_envs=config.num_envs, num_devices=options.num_devices,
        split=options.device_split,
    )
    runner = parallel.make_runner(
        functools.partial(make_train, dense=dense.for_backend()), config, layout,
        num_reports=options.num_reports, eval_episodes=options.eval_episodes,
    )
    hparams = parallel.stack_agents(jax.tree.map(lambda x: x[None], config.hyperparams()), k)
    train_keys, eval_keys = parallel.agent_keys(np.arange(k) + spec["seed"] * k)
    res["setup_seconds"] = since(t0) - t

    # As the command line does: the first init call (which compiles it) and the chunk's
    # ahead-of-time compile count as compile time.
    t = since(t0)
    state = runner.init(train_keys, hparams)
    runner.compile(state, hparams)
    jax.block_until_ready(state)
    res["compile_seconds"] = since(t0) - t

    num_chunks = config.num_updates // runner.trainer.updates_per_chunk

    def run(state):
        for _ in range(num_chunks):
            state, _ = runner.chunk(state, hparams)  # metrics come back to the host
        return jax.block_until_ready(state)

    t = since(t0)
    state = run(state)
    res["train_seconds"] = since(t0) - t
    res["time_to_result_seconds"] = since(t0)
    steps = config.num_updates * config.batch_size
    res["env_steps"], res["aggregate_env_steps"] = steps, steps * k

    if spec.get("steady", True):  # init (already compiled) + all chunks, other seeds
        other_keys, _ = parallel.agent_keys(np.arange(k) + spec["seed"] * k + STEADY_SEED_OFFSET)
        t = since(t0)
        other = run(runner.init(other_keys, hparams))
        res["steady_seconds"] = since(t0) - t
        res["steady_steps_per_second"] = steps * k / res["steady_seconds"]
        del other

    agents = jax.device_get(runner.agent_state(state))  # leaves [K, ...] on the host
    res["final_return"], res["final_return_min"] = greedy_eval(
        greedy_act_of(runner.trainer), agents, eval_keys, spec["eval_episodes"]
    )
    res["num_devices"] = layout.num_devices
    res["layout"] = layout.describe()
    res["updates_per_chunk"] = runner.trainer.updates_per_chunk
    res["num_chunks"] = num_chunks
    res["xla_flags"] = os.environ.get("XLA_FLAGS", "")
    res["notes"] += _notes(spec["config"])
    return res


def train_zoo(spec: dict, t0: float) -> dict:
    """Chunks of `updates_per_chunk` updates; after each, the host checks the training return
    (acjax.ppo_a2c.episode_returns) and records when it first reaches the solve threshold."""
    apply_cpu_settings()
    res = base_result(spec)
    import jax
    import numpy as np

    from acjax.cpu import backend, dense
    from acjax.ppo_a2c import episode_returns, make_train

    res["import_seconds"] = since(t0)

    t = since(t0)
    config = make_config(spec["config"], spec["total_timesteps"])
    num_reports = max(1, config.num_updates // spec["chunk_updates"])
    trainer = make_train(config, num_reports=num_reports, dense=dense.for_backend())
    key = jax.random.PRNGKey(spec["seed"])
    res["setup_seconds"] = since(t0) - t

    t = since(t0)
    init = backend.jit(trainer.init).lower(key).compile()
    chunk = backend.jit(trainer.train_chunk, donate_argnums=0).lower(init(key)).compile()
    res["compile_seconds"] = since(t0) - t

    per_chunk = trainer.updates_per_chunk
    num_chunks = config.num_updates // per_chunk
    batch = config.batch_size

    def run(key, clock=None):
        state = init(key)
        for i in range(num_chunks):
            state, metrics = chunk(state)
            metrics = jax.device_get(metrics)
            if clock is not None:
                means = np.asarray(episode_returns(metrics))
                counts = np.asarray(metrics["episode_count"])
                for u in range(per_chunk):
                    if counts[u] > 0:
                        clock.add(means[u] * counts[u], counts[u], (i * per_chunk + u + 1) * batch)
        return jax.block_until_ready(state)

    clock = SolveClock(t0, spec["solve_threshold"], spec["solve_window"])
    t = since(t0)
    state = run(key, clock)
    res["train_seconds"] = since(t0) - t
    res["time_to_result_seconds"] = since(t0)
    res["time_to_solve_seconds"], res["solve_env_steps"] = clock.seconds, clock.env_steps
    recent = clock.recent_mean()
    res["final_train_return"] = None if recent is None else float(recent)
    steps = config.num_updates * batch
    res["env_steps"] = res["aggregate_env_steps"] = steps

    if spec.get("steady", True):
        t = since(t0)
        other = run(jax.random.PRNGKey(spec["seed"] + STEADY_SEED_OFFSET))
        res["steady_seconds"] = since(t0) - t
        res["steady_steps_per_second"] = steps / res["steady_seconds"]
        del other

    res["final_return"], res["final_return_min"] = greedy_eval(
        greedy_act_of(trainer), state, jax.random.PRNGKey(spec["seed"] + 99), spec["eval_episodes"]
    )
    res["updates_per_chunk"], res["num_chunks"] = per_chunk, num_chunks
    res["num_devices"] = jax.local_device_count()
    res["notes"] += _notes(spec["config"])
    res["notes"].append(
        f"time to solve checked after each chunk of {per_chunk} updates "
        f"({per_chunk * batch} steps); the recent mean is over the newest updates holding "
        f">= {spec['solve_window']} finished episodes"
    )
    return res
