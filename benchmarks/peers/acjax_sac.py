"""acjax SAC runner of `benchmarks/peers.py` (runs in its own child process).

* `train_single`: one seed, the configuration built from command-line flags exactly as
  `python -m acjax.sac FLAGS` builds it (`acjax.run.flags.parse_args` over
  `acjax.sac.sac_preset`), then `acjax.sac.make_train(config)` and
  `acjax.cpu.backend.jit(trainer.train)` compiled ahead of time, like `acjax_ppo.train_single`
  (and, like it, after `acjax.cpu.apply()`, the CPU settings the command line starts with).
  The flags are the workload configuration's `acjax_argv[framework]` (`acjax`: just
  `--env Pendulum-v1`, i.e. acjax's Pendulum preset; `acjax-ref`: the peers' reference
  hyperparameters) plus `--total-timesteps`.

The first call gives the time to result, a second call of the already compiled program with
another seed the steady-state steps per second; the final policy is evaluated greedily with the
helper rejax's runner uses (`_common.greedy_eval` on gymnax's environment).
"""

from __future__ import annotations

from _common import base_result, greedy_eval, since
from acjax_ppo import apply_cpu_settings, greedy_act_of, time_steady


def config_of(argv: list[str]):
    """The `SACConfig` that `python -m acjax.sac *argv` would train."""
    from acjax.run.flags import parse_args
    from acjax.sac import SACConfig, sac_preset

    config, _ = parse_args(SACConfig, sac_preset, list(argv), "acjax SAC (peers benchmark)")
    return config


def hyperparameters(config) -> dict:
    """What the run used, flat, for the result (and the report)."""
    return dict(
        env=config.env, num_envs=config.num_envs, num_steps=config.num_steps,
        gradient_steps=config.gradient_steps, learning_starts=config.learning_starts,
        buffer_size=config.buffer_size, batch_size=config.batch_size, gamma=config.gamma,
        tau=config.tau, actor_lr=config.actor_lr, critic_lr=config.critic_lr,
        alpha_lr=config.alpha_lr, autotune_alpha=config.autotune_alpha,
        init_alpha=config.init_alpha, target_entropy=config.target_entropy,
        max_grad_norm=config.max_grad_norm, hidden_sizes=list(config.network.hidden_sizes),
        critic_hidden_sizes=list(config.network.critic_sizes),
        activation=config.network.activation,
    )


def train_single(spec: dict, t0: float) -> dict:
    apply_cpu_settings()
    res = base_result(spec)
    import jax

    from acjax.cpu import backend
    from acjax.sac import make_train

    res["import_seconds"] = since(t0)

    t = since(t0)
    cfg = spec["config"]
    argv = [*cfg["acjax_argv"][spec["framework"]], "--total-timesteps",
            str(spec["total_timesteps"])]
    config = config_of(argv)
    trainer = make_train(config)
    key = jax.random.PRNGKey(spec["seed"])
    res["setup_seconds"] = since(t0) - t

    t = since(t0)
    train = backend.jit(trainer.train).lower(key).compile()
    res["compile_seconds"] = since(t0) - t

    t = since(t0)
    state, _ = train(key)
    jax.block_until_ready(state)
    res["train_seconds"] = since(t0) - t
    res["time_to_result_seconds"] = since(t0)
    steps = config.num_updates * config.steps_per_iteration
    res["env_steps"] = res["aggregate_env_steps"] = steps
    trained = int(jax.device_get(state.update_step)) * config.steps_per_iteration
    if trained != steps:
        res["notes"].append(f"acjax trained {trained} steps, expected {steps}")

    if spec.get("steady", True):
        time_steady(res, train, spec["seed"], steps)

    eval_key = jax.random.PRNGKey(spec["seed"] + 99)
    res["final_return"], res["final_return_min"] = greedy_eval(
        greedy_act_of(trainer), state, eval_key, spec["eval_episodes"], env_name=config.env
    )
    returns, _ = jax.jit(trainer.evaluate, static_argnums=2)(
        state, eval_key, spec["eval_episodes"]
    )
    res["final_return_acjax_evaluate"] = float(returns.mean())
    res["gradient_steps_done"] = int(jax.device_get(state.gradient_step))
    res["num_devices"] = jax.local_device_count()
    utd = config.gradient_steps / config.steps_per_iteration
    if utd != 1:
        res["notes"].append(
            f"acjax's preset takes {config.gradient_steps} gradient steps per "
            f"{config.steps_per_iteration} env steps ({utd:g} per env step; rejax, acjax-ref, SB3 "
            "and sbx 1): its env steps/s carries that much less gradient work per step"
        )
    res["argv"] = argv
    res["hyperparameters"] = hyperparameters(config)
    return res
