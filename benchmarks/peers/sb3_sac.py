"""Stable-Baselines3 (PyTorch, CPU) and sbx (its JAX port) SAC runners of `benchmarks/peers.py`.

Both train on gymnasium's Pendulum-v1 in a one-env `DummyVecEnv` (`make_vec_env`, the env
wrapped in `Monitor`) at rl-baselines3-zoo's Pendulum-v1 SAC settings (hyperparams/sac.yml:
n_timesteps 20000, learning_rate 1e-3, everything else the library's defaults, which the
workload configuration spells out and this runner passes explicitly). As for PPO there is no
separate compile step (sbx jits inside `learn()`), so `compile_seconds` is 0 and steady steps/s
is steps / `learn()` time; the final policy is evaluated with `evaluate_policy`
(deterministic) on a fresh gymnasium Pendulum-v1.
"""

from __future__ import annotations

from _common import base_result, since
from sb3_ppo import finish_learned

SB3_SAC_DIFFERENCES = [
    ("SB3 / sbx step gymnasium's Pendulum-v1 (NumPy, one env in a DummyVecEnv, a Python loop "
     "around every env step and gradient step); acjax and rejax gymnax's, inside one compiled "
     "program"),
    ("SB3 / sbx: random actions while num_timesteps < learning_starts and gradient steps once "
     "num_timesteps > learning_starts; acjax-ref: random actions for env steps < learning_starts "
     "and gradient steps from the iteration that reaches it (one step apart)"),
]
SBX_SAC_DIFFERENCES = [
    ("sbx: flax's default initialisation (lecun normal) for actor and critics; SB3 and acjax "
     "PyTorch's fan-in uniform"),
]


def _zoo_kwargs(zoo: dict) -> dict:
    return dict(
        learning_rate=zoo["learning_rate"],
        buffer_size=zoo["buffer_size"],
        learning_starts=zoo["learning_starts"],
        batch_size=zoo["batch_size"],
        tau=zoo["tau"],
        gamma=zoo["gamma"],
        train_freq=zoo["train_freq"],
        gradient_steps=zoo["gradient_steps"],
        ent_coef=zoo["ent_coef"],
        target_entropy=zoo["target_entropy"],
    )


def _train(spec: dict, t0: float, library: str) -> dict:
    res = base_result(spec)

    if library == "sb3":
        import torch
        from stable_baselines3 import SAC
    else:
        import flax.linen as nn
        from sbx import SAC
    from stable_baselines3.common.env_util import make_vec_env

    res["import_seconds"] = since(t0)

    t = since(t0)
    if library == "sb3" and spec.get("torch_threads"):
        torch.set_num_threads(spec["torch_threads"])
    cfg = spec["config"]
    zoo = cfg["zoo"]
    seed = spec["seed"]
    if zoo["activation"] != "relu":
        raise ValueError(f"activation {zoo['activation']!r}: only relu is wired up here")
    activation = torch.nn.ReLU if library == "sb3" else nn.relu
    policy_kwargs = dict(net_arch=list(zoo["hidden_sizes"]), activation_fn=activation)
    env = make_vec_env(cfg["env"], n_envs=zoo["num_envs"], seed=seed)
    model = SAC("MlpPolicy", env, policy_kwargs=policy_kwargs, seed=seed, device="cpu",
                verbose=0, **_zoo_kwargs(zoo))
    steps = spec["total_timesteps"]
    res["setup_seconds"] = since(t0) - t
    res["compile_seconds"] = 0.0

    t = since(t0)
    model.learn(total_timesteps=steps)
    finish_learned(res, model, spec, t0, t, library, cfg["env"],
                   SB3_SAC_DIFFERENCES + (SBX_SAC_DIFFERENCES if library == "sbx" else []))
    res["hyperparameters"] = dict(zoo, total_timesteps=steps)
    return res


def train_sb3(spec: dict, t0: float) -> dict:
    return _train(spec, t0, "sb3")


def train_sbx(spec: dict, t0: float) -> dict:
    return _train(spec, t0, "sbx")
