"""Throughput of acjax PPO on CartPole-v1 at PureJaxRL's configuration.

4 envs x 128 steps, 4 epochs x 4 minibatches, 64x64 tanh, 499,712 env steps. Prints import,
compile and run times and steady-state env steps per second (median over repeats), plus the
final greedy return so nobody wins by not learning.

    python benchmarks/ppo_cartpole.py [--repeats 3] [--json out.json]
"""

import argparse
import json
import platform
import statistics
import time

t_import = time.perf_counter()
import jax

import acjax.cpu
from acjax.cpu import backend, dense
from acjax.ppo_a2c import PPOA2CConfig, make_train

# Importing acjax changes nothing in JAX: apply the CPU settings acjax's command line starts
# with (XLA's scheduler flag, the straight-line threefry lowering) before JAX's backend starts.
acjax.cpu.apply()
import_seconds = time.perf_counter() - t_import


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    config = PPOA2CConfig(  # PureJaxRL's CartPole configuration
        env="CartPole-v1", total_timesteps=500_000, num_envs=4, num_steps=128, update_epochs=4,
        num_minibatches=4, learning_rate=2.5e-4, gamma=0.99, gae_lambda=0.95, ent_coef=0.01,
    )
    trainer = make_train(config, dense=dense.for_backend())  # the command line's dense layer
    key = jax.random.PRNGKey(0)
    t0 = time.perf_counter()
    train = backend.jit(trainer.train).lower(key).compile()
    compile_seconds = time.perf_counter() - t0
    run_seconds = []
    for seed in range(args.repeats):
        t0 = time.perf_counter()
        state, _ = train(jax.random.PRNGKey(seed))
        jax.block_until_ready(state)
        run_seconds.append(time.perf_counter() - t0)
    returns, _ = jax.jit(trainer.evaluate, static_argnums=2)(state, jax.random.PRNGKey(99), 20)
    steps = config.num_updates * config.batch_size
    result = {
        "workload": "ppo_cartpole_purejaxrl_config",
        "env_steps": steps,
        "import_seconds": round(import_seconds, 3),
        "compile_seconds": round(compile_seconds, 3),
        "run_seconds_median": round(statistics.median(run_seconds), 3),
        "steps_per_second": round(steps / statistics.median(run_seconds)),
        "greedy_return_last_seed": float(returns.mean()),
        "jax": jax.__version__,
        "device": jax.devices()[0].device_kind,
        "cpu": platform.processor() or platform.machine(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
