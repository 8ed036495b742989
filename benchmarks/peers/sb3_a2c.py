"""Stable-Baselines3 (PyTorch, CPU) A2C runner of `benchmarks/actor_learner.py`.

SB3's `A2C` on gymnasium's CartPole-v1 (`make_vec_env`, each env wrapped in `Monitor`) in a
`DummyVecEnv` (`spec["vec_env"] == "dummy"`: the environments stepped one after the other in
this process, as gymnasium's SyncVectorEnv does) or a `SubprocVecEnv` (`"subproc"`: one worker
process per environment, as AsyncVectorEnv, started with `spec["start_method"]`, default
"fork" like acjax's AsyncVectorEnv on Linux; SB3's own default, forkserver, only starts slower).
Hyperparameters are SB3's A2C defaults (RMSprop, lr 7e-4, gamma 0.99, separate 64x64 tanh actor
and critic) except `n_steps`, set to the actor-learner's unroll length. There is no compile
step: `compile_seconds` is 0 and steady steps/s is steps / `learn()` time.
"""

from __future__ import annotations

from _common import base_result, since


def train_sb3_a2c(spec: dict, t0: float) -> dict:
    res = base_result(spec)

    import numpy as np
    import torch
    from stable_baselines3 import A2C
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    res["import_seconds"] = since(t0)
    t = since(t0)
    if spec.get("torch_threads"):
        torch.set_num_threads(spec["torch_threads"])
    if spec["vec_env"] == "subproc":
        vec_cls = SubprocVecEnv
        vec_kwargs = dict(start_method=spec.get("start_method") or "fork")
    elif spec["vec_env"] == "dummy":
        vec_cls, vec_kwargs = DummyVecEnv, None
    else:
        raise ValueError(f"vec_env={spec['vec_env']!r}: 'dummy' or 'subproc'")
    env = make_vec_env("CartPole-v1", n_envs=spec["num_envs"], seed=spec["seed"],
                       vec_env_cls=vec_cls, vec_env_kwargs=vec_kwargs)
    try:
        model = A2C("MlpPolicy", env, n_steps=spec["num_steps"], seed=spec["seed"], device="cpu",
                    verbose=0)
        res["setup_seconds"] = since(t0) - t
        res["compile_seconds"] = 0.0
        t = since(t0)
        model.learn(total_timesteps=spec["total_timesteps"])
        res["train_seconds"] = since(t0) - t
    finally:
        env.close()
    res["time_to_result_seconds"] = since(t0)
    res["env_steps"] = res["aggregate_env_steps"] = int(model.num_timesteps)
    res["steady_seconds"] = res["train_seconds"]
    res["steady_steps_per_second"] = model.num_timesteps / res["train_seconds"]
    res["updates"] = int(model.num_timesteps // (spec["num_envs"] * spec["num_steps"]))
    res["updates_per_second"] = res["updates"] / res["train_seconds"]
    episodes = [info["r"] for info in model.ep_info_buffer]
    res["final_train_return"] = float(np.mean(episodes)) if episodes else None
    res["vec_env"] = vec_cls.__name__
    res["start_method"] = vec_kwargs["start_method"] if vec_kwargs else None
    res["torch_threads"] = torch.get_num_threads()
    res["notes"].append("compile_seconds 0: PyTorch, eager")
    return res
