"""rejax SAC runner of `benchmarks/peers.py` (runs in its own child process).

rejax 0.1.3 on gymnax 1.0.1's Pendulum-v1 through `rejax_ppo.FiveValueStep` (rejax unpacks the
pre-1.0 5-value `step`; the adapter returns `done = terminated | truncated`), at rejax's own
SAC configuration for Pendulum-v1: `configs/gymnax/pendulum.yaml` of the rejax repository
(github.com/keraJLi/rejax; the yaml files are not part of the wheel, so the workload
configuration carries the values), trained for the workload's number of steps instead of the
yaml's 10,000. The hidden layers are rejax SAC's default (64, 64): the yaml sets only the
activation (swish).

As for PPO, `eval_freq` is the whole run, the initial evaluation is skipped and the evaluation
callback does nothing, so rejax is charged for training only. rejax's own `act` samples from
its policy; the final policy is evaluated greedily here (tanh of the Gaussian's mean, scaled to
the action bounds, on rejax's normalised observations) with the helper acjax's runner uses
(`_common.greedy_eval`, gymnax's Pendulum-v1).
"""

from __future__ import annotations

from _common import base_result, greedy_eval, make_gymnax, since
from rejax_ppo import FiveValueStep, _no_evaluation

STEADY_SEED_OFFSET = 10_000

# What this runner cannot make equal to acjax's (and the SB3 / sbx) configurations.
REJAX_SAC_DIFFERENCES = [
    ("rejax runs its own Pendulum-v1 SAC hyperparameters (rejax repository, "
     "configs/gymnax/pendulum.yaml: 1 env, 1 gradient step per env step, lr 0.01 for actor, "
     "critics and temperature, batch 256, buffer 10k, updates after 256 steps, polyak 0.98, "
     "observation normalisation, swish activation, rejax's default 64x64 layers), not acjax's "
     "preset nor rl-zoo's"),
    ("time limits: rejax treats Pendulum's 200-step truncation as termination (no bootstrap); "
     "acjax, SB3 and sbx bootstrap truncated episodes"),
    ("warm-up: rejax acts with its (untrained) policy from the first step and only delays the "
     "updates (fill_buffer); acjax, SB3 and sbx take uniformly random actions before "
     "learning_starts"),
    ("update order: rejax steps the actor (against the old critics), then the critics, then "
     "the temperature, with loss alpha * (...) in alpha; acjax the critics, then the actor, then "
     "log alpha with loss log_alpha * (...)"),
    ("initialisation: rejax's Dense layers use flax defaults (lecun normal, zero bias); acjax "
     "PyTorch's fan-in uniform; rejax clips the policy's log std to [-10, 2], acjax to [-20, 2]"),
    ("greedy evaluation of rejax: tanh(mean) computed by the runner on rejax's normalised "
     "observations (rejax's own act() samples)"),
]


def make_algo(cfg: dict, total_timesteps: int):
    """rejax SAC with the workload's rejax hyperparameters (`cfg["rejax"]`)."""
    from rejax import SAC

    r = cfg["rejax"]
    env, env_params = make_gymnax(cfg["env"])
    steps = max(1, total_timesteps // r["num_envs"]) * r["num_envs"]
    kwargs = dict(
        env=FiveValueStep(env),
        env_params=env_params,
        total_timesteps=steps,
        eval_freq=steps,  # one block of training, no evaluation inside it
        skip_initial_evaluation=True,
        num_envs=r["num_envs"],
        buffer_size=r["buffer_size"],
        fill_buffer=r["fill_buffer"],
        batch_size=r["batch_size"],
        learning_rate=r["learning_rate"],
        num_epochs=r["num_epochs"],
        gamma=r["gamma"],
        polyak=r["polyak"],
        normalize_observations=r["normalize_observations"],
        agent_kwargs=dict(activation=r["activation"]),
        hidden_layer_sizes=tuple(r["hidden_sizes"]),
    )
    if r.get("max_grad_norm") is not None:
        kwargs["max_grad_norm"] = r["max_grad_norm"]
    algo = SAC.create(**kwargs)
    return algo.replace(eval_callback=_no_evaluation), steps


def _act_of(algo):
    import jax.numpy as jnp

    def mode(module, obs):
        mean = module.action_mean(module.features(obs))
        return module.action_loc + jnp.tanh(mean) * module.action_scale

    def act_of(ts):
        def act(obs):
            if algo.normalize_observations:
                obs = algo.normalize_obs(ts.obs_rms_state, obs)
            return algo.actor.apply(ts.actor_ts.params, obs, method=mode)

        return act

    return act_of


def train(spec: dict, t0: float) -> dict:
    """One seed: `jax.jit(algo.train)`."""
    res = base_result(spec)
    import jax
    import rejax  # noqa: F401  (the library stack: rejax, distrax, optax, gymnax)

    res["import_seconds"] = since(t0)

    t = since(t0)
    cfg = spec["config"]
    algo, steps = make_algo(cfg, spec["total_timesteps"])
    key = jax.random.PRNGKey(spec["seed"])
    fn = jax.jit(algo.train)
    res["setup_seconds"] = since(t0) - t

    t = since(t0)
    compiled = fn.lower(key).compile()
    res["compile_seconds"] = since(t0) - t

    t = since(t0)
    ts, _ = compiled(key)
    jax.block_until_ready(ts)
    res["train_seconds"] = since(t0) - t
    res["time_to_result_seconds"] = since(t0)
    res["env_steps"] = res["aggregate_env_steps"] = steps
    trained = int(jax.device_get(ts.global_step))
    if trained != steps:
        res["notes"].append(f"rejax trained {trained} steps, expected {steps}")

    if spec.get("steady", True):
        t = since(t0)
        other, _ = compiled(jax.random.PRNGKey(spec["seed"] + STEADY_SEED_OFFSET))
        jax.block_until_ready(other)
        res["steady_seconds"] = since(t0) - t
        res["steady_steps_per_second"] = steps / res["steady_seconds"]
        del other

    res["final_return"], res["final_return_min"] = greedy_eval(
        _act_of(algo), ts, jax.random.PRNGKey(spec["seed"] + 99), spec["eval_episodes"],
        env_name=cfg["env"],
    )
    res["num_devices"] = 1
    res["hyperparameters"] = dict(cfg["rejax"], total_timesteps=steps)
    res["env_adapter"] = (
        f"FiveValueStep: gymnax 1.0.1 {cfg['env']} with step() -> (obs, state, reward, "
        "terminated | truncated, info)"
    )
    res["notes"] += REJAX_SAC_DIFFERENCES
    return res
