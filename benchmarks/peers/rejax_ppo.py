"""rejax PPO runners of `benchmarks/peers.py` (each runs in its own child process).

rejax 0.1.3 unpacks the 5-value `step` of gymnax < 1.0 (`obs, state, reward, done, info`);
gymnax 1.0.1 returns six values (terminated and truncated apart), so rejax is given
`FiveValueStep`, a small adapter around gymnax's own CartPole-v1 whose `step` returns
`done = terminated | truncated`. rejax takes such an object as `PPO.create(env=..., env_params=...)`
and calls only its `reset`, `step`, `observation_space` and `action_space`.

rejax's `train(rng)` evaluates its policy during training (128 episodes every `eval_freq`
steps, and once before training); here `eval_freq` is the whole run, the initial evaluation is
skipped and the evaluation callback is replaced by one that does nothing (rejax's documented
`algo.replace(eval_callback=...)`), so rejax is charged for training only. Its final policy is
evaluated greedily afterwards with the same helper as acjax's (`_common.greedy_eval`).
"""

from __future__ import annotations

from _common import base_result, greedy_eval, make_gymnax_cartpole, since

STEADY_SEED_OFFSET = 10_000

# What this runner cannot make equal to acjax's configuration (rejax 0.1.3 hard-codes it).
REJAX_DIFFERENCES = [
    ("gradient clipping: rejax applies optax.clip(max_grad_norm), i.e. per element at 0.5; "
     "acjax clips the global norm to 0.5"),
    "Adam eps: rejax uses optax.adam's default 1e-8 (not configurable); acjax 1e-5",
    ("initialisation: rejax's Dense layers use flax defaults (lecun normal, zero bias); acjax "
     "orthogonal (sqrt 2 hidden, 0.01 policy head, 1 value head)"),
    ("value loss: rejax always clips the value update around the rollout's values (clip_eps); "
     "acjax does so where the configuration asks (clip_value, as PureJaxRL's does), not in the "
     "rl-zoo configuration"),
    ("actor and critic: rejax takes two separate Adam steps (actor loss, critic loss) per "
     "minibatch; acjax one step on the summed loss (same networks and learning rate)"),
    ("time limits: rejax treats truncation at 500 steps as termination (no bootstrap); acjax "
     "bootstraps truncated episodes"),
    ("minibatches: rejax shuffles all num_envs x num_steps samples; acjax permutes each "
     "environment's steps (every minibatch holds num_steps / num_minibatches steps of every env)"),
]


class FiveValueStep:
    """gymnax >= 1.0 environment seen through the pre-1.0 API rejax 0.1.3 expects."""

    def __init__(self, env):
        self.env = env

    @property
    def default_params(self):
        return self.env.default_params

    @property
    def name(self) -> str:
        return self.env.name

    def reset(self, key, params):
        return self.env.reset(key, params)

    def step(self, key, state, action, params):
        import jax.numpy as jnp

        obs, state, reward, terminated, truncated, info = self.env.step(
            key, state, action, params
        )
        return obs, state, reward, jnp.logical_or(terminated, truncated), info

    def observation_space(self, params):
        return self.env.observation_space(params)

    def action_space(self, params):
        return self.env.action_space(params)


def _no_evaluation(algo, train_state, rng):
    return ()


def make_algo(cfg: dict, total_timesteps: int):
    """rejax PPO with the workload's hyperparameters (as far as rejax exposes them)."""
    import optax
    from rejax import PPO

    env, env_params = make_gymnax_cartpole()
    batch = cfg["num_envs"] * cfg["num_steps"]
    num_updates = total_timesteps // batch
    learning_rate = cfg["learning_rate"]
    if cfg["anneal_lr"]:  # one Adam step per minibatch, like acjax's schedule
        learning_rate = optax.linear_schedule(
            cfg["learning_rate"], 0.0, num_updates * cfg["update_epochs"] * cfg["num_minibatches"]
        )
    algo = PPO.create(
        env=FiveValueStep(env),
        env_params=env_params,
        total_timesteps=num_updates * batch,
        eval_freq=num_updates * batch,  # one block of training, no evaluation inside it
        skip_initial_evaluation=True,
        num_envs=cfg["num_envs"],
        num_steps=cfg["num_steps"],
        num_epochs=cfg["update_epochs"],
        num_minibatches=cfg["num_minibatches"],
        learning_rate=learning_rate,
        max_grad_norm=cfg["max_grad_norm"],
        gamma=cfg["gamma"],
        gae_lambda=cfg["gae_lambda"],
        clip_eps=cfg["clip_eps"],
        ent_coef=cfg["ent_coef"],
        vf_coef=cfg["vf_coef"],
        normalize_observations=False,
        normalize_rewards=False,
        agent_kwargs=dict(activation=cfg["activation"],
                          hidden_layer_sizes=tuple(cfg["hidden_sizes"])),
    )
    return algo.replace(eval_callback=_no_evaluation), num_updates * batch


def _act_of(algo):
    import jax.numpy as jnp

    def logits(module, obs):
        return module.action_logits(module.features(obs))

    return lambda ts: (
        lambda obs: jnp.argmax(algo.actor.apply(ts.actor_ts.params, obs, method=logits), -1)
    )


def train(spec: dict, t0: float) -> dict:
    """One seed (`num_seeds == 1`: `jax.jit(algo.train)`) or K seeds
    (`jax.jit(jax.vmap(algo.train))`, as rejax's documentation shows)."""
    res = base_result(spec)
    import jax
    import rejax  # noqa: F401  (the library stack: rejax, distrax, optax, gymnax)

    res["import_seconds"] = since(t0)

    t = since(t0)
    k = spec.get("num_seeds", 1)
    algo, steps = make_algo(spec["config"], spec["total_timesteps"])
    if k == 1:
        keys = jax.random.PRNGKey(spec["seed"])
        other_keys = jax.random.PRNGKey(spec["seed"] + STEADY_SEED_OFFSET)
        fn = jax.jit(algo.train)
    else:
        keys = jax.random.split(jax.random.PRNGKey(spec["seed"]), k)
        other_keys = jax.random.split(jax.random.PRNGKey(spec["seed"] + STEADY_SEED_OFFSET), k)
        fn = jax.jit(jax.vmap(algo.train))
    res["setup_seconds"] = since(t0) - t

    t = since(t0)
    compiled = fn.lower(keys).compile()
    res["compile_seconds"] = since(t0) - t

    t = since(t0)
    ts, _ = compiled(keys)
    jax.block_until_ready(ts)
    res["train_seconds"] = since(t0) - t
    res["time_to_result_seconds"] = since(t0)
    res["env_steps"], res["aggregate_env_steps"] = steps, steps * k
    trained = int(jax.device_get(ts.global_step).reshape(-1)[0])
    if trained != steps:
        res["notes"].append(f"rejax trained {trained} steps, expected {steps}")

    if spec.get("steady", True):
        t = since(t0)
        other, _ = compiled(other_keys)
        jax.block_until_ready(other)
        res["steady_seconds"] = since(t0) - t
        res["steady_steps_per_second"] = steps * k / res["steady_seconds"]
        del other

    eval_keys = jax.random.PRNGKey(spec["seed"] + 99)
    if k > 1:
        eval_keys = jax.random.split(eval_keys, k)
    res["final_return"], res["final_return_min"] = greedy_eval(
        _act_of(algo), ts, eval_keys, spec["eval_episodes"]
    )
    res["num_devices"] = 1
    res["env_adapter"] = (
        "FiveValueStep: gymnax 1.0.1 CartPole-v1 with step() -> (obs, state, reward, "
        "terminated | truncated, info)"
    )
    res["notes"] += REJAX_DIFFERENCES
    return res
