"""Stable-Baselines3 (PyTorch, CPU) and sbx (its JAX port) PPO runners of `benchmarks/peers.py`.

Both train on gymnasium's CartPole-v1 in a `DummyVecEnv` (`make_vec_env`, each env wrapped in
`Monitor`) with the workload's hyperparameters; linear schedules follow rl-zoo's `lin_<x>`
(`x * progress_remaining`, updated once per rollout). A callback records the time (from the
child's first statement) when the mean return of the last `solve_window` training episodes
first reaches `solve_threshold`. There is no separate compile step (sbx compiles inside
`learn()`), so `compile_seconds` is 0 and steady steps/s is steps / `learn()` time.
"""

from __future__ import annotations

from _common import SolveClock, base_result, since, spread

SB3_DIFFERENCES = [
    ("learning rate and clip range decay once per rollout (rl-zoo's lin_ schedules); acjax "
     "decays the learning rate every gradient step and keeps clip_eps constant"),
]
SBX_DIFFERENCES = [
    *SB3_DIFFERENCES,
    ("sbx: hidden layers use flax's default init (lecun normal); the policy head is orthogonal "
     "(gain 0.01) with ortho_init=True, the value head flax's default"),
    "sbx: actor and critic are separate optax chains, each clipped to global norm 0.5",
]


def _linear(initial: float):
    def schedule(progress_remaining: float) -> float:
        return progress_remaining * initial

    return schedule


def _train(spec: dict, t0: float, library: str) -> dict:
    res = base_result(spec)

    if library == "sb3":
        import torch
        from stable_baselines3 import PPO
    else:
        import flax.linen as nn
        from sbx import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    res["import_seconds"] = since(t0)

    class SolveCallback(BaseCallback):
        def __init__(self, clock: SolveClock):
            super().__init__()
            self.clock = clock

        def _on_step(self) -> bool:
            for info in self.locals.get("infos", ()):
                episode = info.get("episode")
                if episode is not None:
                    self.clock.add(float(episode["r"]), 1, self.num_timesteps)
            return True

    t = since(t0)
    if library == "sb3" and spec.get("torch_threads"):
        torch.set_num_threads(spec["torch_threads"])
    cfg = spec["config"]
    seed = spec["seed"]
    hidden = list(cfg["hidden_sizes"])
    if cfg["activation"] != "tanh":
        raise ValueError(f"activation {cfg['activation']!r}: only tanh is wired up here")
    if library == "sb3":
        policy_kwargs = dict(net_arch=dict(pi=hidden, vf=hidden), activation_fn=torch.nn.Tanh,
                             ortho_init=True)
    else:
        policy_kwargs = dict(net_arch=dict(pi=hidden, vf=hidden), activation_fn=nn.tanh,
                             ortho_init=True)
    env = make_vec_env("CartPole-v1", n_envs=cfg["num_envs"], seed=seed)
    lr = _linear(cfg["learning_rate"]) if cfg["anneal_lr"] else cfg["learning_rate"]
    clip = _linear(cfg["clip_eps"]) if cfg.get("anneal_clip") else cfg["clip_eps"]
    model = PPO(
        "MlpPolicy",
        env,
        learning_rate=lr,
        n_steps=cfg["num_steps"],
        batch_size=cfg["num_envs"] * cfg["num_steps"] // cfg["num_minibatches"],
        n_epochs=cfg["update_epochs"],
        gamma=cfg["gamma"],
        gae_lambda=cfg["gae_lambda"],
        clip_range=clip,
        ent_coef=cfg["ent_coef"],
        vf_coef=cfg["vf_coef"],
        max_grad_norm=cfg["max_grad_norm"],
        policy_kwargs=policy_kwargs,
        seed=seed,
        device="cpu",
        verbose=0,
    )
    steps = spec["total_timesteps"]
    res["setup_seconds"] = since(t0) - t
    res["compile_seconds"] = 0.0

    clock = SolveClock(t0, spec["solve_threshold"], spec["solve_window"])
    t = since(t0)
    model.learn(total_timesteps=steps, callback=SolveCallback(clock))
    finish_learned(res, model, spec, t0, t, library, "CartPole-v1",
                   SB3_DIFFERENCES if library == "sb3" else SBX_DIFFERENCES)
    res["time_to_solve_seconds"], res["solve_env_steps"] = clock.seconds, clock.env_steps
    recent = clock.recent_mean()
    res["final_train_return"] = None if recent is None else float(recent)
    return res


def finish_learned(res: dict, model, spec: dict, t0: float, learn_start: float, library: str,
                   env_id: str, notes: list[str]) -> None:
    """Fills `res` right after `model.learn()` (started at `learn_start`): training time, time
    to result, steady steps/s (steps / learn() time), the greedy return over
    `spec["eval_episodes"]` episodes of a fresh gymnasium `env_id` (deterministic
    `evaluate_policy`), the library's notes and thread count."""
    import gymnasium as gym
    import numpy as np
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor

    res["train_seconds"] = since(t0) - learn_start
    res["time_to_result_seconds"] = since(t0)
    res["env_steps"] = res["aggregate_env_steps"] = int(model.num_timesteps)
    res["steady_seconds"] = res["train_seconds"]
    res["steady_steps_per_second"] = model.num_timesteps / res["train_seconds"]

    eval_env = Monitor(gym.make(env_id))
    eval_env.reset(seed=spec["seed"] + 99)
    returns, _ = evaluate_policy(model, eval_env, n_eval_episodes=spec["eval_episodes"],
                                 deterministic=True, return_episode_rewards=True)
    res["final_return"], res["final_return_min"] = spread([np.mean(returns)])
    res["num_devices"] = 1
    if library == "sb3":
        import torch

        res["torch_threads"] = torch.get_num_threads()
    res["notes"] += notes
    res["notes"].append("compile_seconds 0: no separate compile step (sbx jits inside learn())"
                        if library == "sbx" else "compile_seconds 0: PyTorch, eager")


def train_sb3(spec: dict, t0: float) -> dict:
    return _train(spec, t0, "sb3")


def train_sbx(spec: dict, t0: float) -> dict:
    return _train(spec, t0, "sbx")
