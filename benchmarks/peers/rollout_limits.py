"""The limits training is measured against, in a child of `benchmarks/peers.py` (acjax's
interpreter).

* Rollout limit at each workload's number of environments: a jitted `lax.scan` of vmapped
  gymnax CartPole-v1 steps with random actions, and with a 64x64 tanh MLP policy's forward pass
  (a categorical action sampled from its logits); env steps per second.
* Roofline: the peak dense float32 matmul rate measured here (n x n @ n x n, jitted, median of
  several calls) and the FLOPs of one training update of each acjax configuration:
  - XLA's cost analysis, `jax.jit(trainer.update).lower(state).compile().cost_analysis()`;
    on CPU it counts the body of a loop (`lax.scan`) once, not once per iteration, so for an
    update made of scans (rollout, epochs, minibatches) it reports a fraction of the work;
  - a count over the update's jaxpr that multiplies every scan body by its length: exact for
    matrix products (2 x M x N x K), one FLOP per output element for everything else.
  Both are divided by the batch (num_envs x num_steps): FLOP per env step.

acjax's CPU settings are applied first (`acjax.cpu.apply()`, as every acjax command line
does: the XLA scheduler flag and the CPU threefry lowering of `acjax.cpu.backend`), so they apply
to the rollouts as they do to acjax's training; the update is built with the command line's
dense layer (`acjax.cpu.dense.for_backend()`).
"""

from __future__ import annotations

import math
import os
import statistics

from _common import make_gymnax_cartpole, since


def _timed(fn, args, calls: int) -> tuple[float, list[float]]:
    """`(compile seconds, call seconds)`: one warm-up call, then `calls` timed ones."""
    import time

    import jax

    t = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_seconds = time.perf_counter() - t
    jax.block_until_ready(compiled(*args))
    seconds = []
    for _ in range(calls):
        t = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        seconds.append(time.perf_counter() - t)
    return compile_seconds, seconds


def rollout_limit(num_envs: int, target_steps: int, calls: int) -> dict:
    import jax
    import jax.numpy as jnp

    env, env_params = make_gymnax_cartpole()
    length = max(1, target_steps // num_envs)
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))
    obs_dim = env.observation_space(env_params).shape[0]
    num_actions = env.action_space(env_params).n

    def init_params(key):
        sizes = [obs_dim, 64, 64, num_actions]
        keys = jax.random.split(key, len(sizes) - 1)
        return [
            (jax.random.normal(k, (m, n)) / math.sqrt(m), jnp.zeros(n))
            for k, m, n in zip(keys, sizes[:-1], sizes[1:], strict=True)
        ]

    def policy_action(params, obs, key):
        h = obs
        for w, b in params[:-1]:
            h = jnp.tanh(h @ w + b)
        w, b = params[-1]
        return jax.random.categorical(key, h @ w + b)

    def run(key, params, use_policy: bool):
        reset_key, run_key = jax.random.split(key)
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(
            jax.random.split(reset_key, num_envs), env_params
        )

        def body(carry, k):
            obs, state, checksum = carry
            action_key, env_key = jax.random.split(k)
            if use_policy:
                action = policy_action(params, obs, action_key)
            else:
                action = jax.random.randint(action_key, (num_envs,), 0, num_actions)
            obs, state, reward, _, _, _ = step(
                jax.random.split(env_key, num_envs), state, action, env_params
            )
            # Use the observations so they are computed, as training needs them.
            return (obs, state, checksum + jnp.sum(reward) + jnp.sum(obs)), None

        (_, _, checksum), _ = jax.lax.scan(
            body, (obs, state, jnp.float32(0)), jax.random.split(run_key, length)
        )
        return checksum

    key = jax.random.PRNGKey(0)
    params = init_params(jax.random.PRNGKey(1))
    out = dict(num_envs=num_envs, steps_per_call=length * num_envs)
    for name, use_policy in (("random", False), ("policy", True)):
        compile_seconds, seconds = _timed(
            lambda k, p, use_policy=use_policy: run(k, p, use_policy), (key, params), calls
        )
        out[f"{name}_compile_seconds"] = compile_seconds
        out[f"{name}_call_seconds"] = seconds
        out[f"{name}_steps_per_second"] = length * num_envs / statistics.median(seconds)
    return out


def peak_matmul(n: int, calls: int) -> dict:
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    _, seconds = _timed(lambda a, b: a @ b, (a, b), calls)
    flops = 2 * n**3
    return dict(n=n, call_seconds=seconds, flops=flops,
                gflops_per_second=flops / statistics.median(seconds) / 1e9)


def _jaxpr_flops(jaxpr) -> tuple[float, float]:
    """`(matmul FLOPs, other FLOPs)` of a jaxpr, every scan body counted `length` times; a
    `cond` counts its costliest branch, a `while` loop its body once (none in these updates)."""
    from jax.extend import core as jcore

    def inner(value):
        if isinstance(value, jcore.ClosedJaxpr):
            return [value.jaxpr]
        if isinstance(value, jcore.Jaxpr):
            return [value]
        if isinstance(value, (tuple, list)):
            return [j for v in value for j in inner(v)]
        return []

    dot = other = 0.0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            k = math.prod(eqn.invars[0].aval.shape[i] for i in contract)
            dot += 2.0 * math.prod(eqn.outvars[0].aval.shape) * k
            continue
        subs = [j for value in eqn.params.values() for j in inner(value)]
        if not subs:
            other += sum(math.prod(v.aval.shape) for v in eqn.outvars
                         if hasattr(v.aval, "shape"))
            continue
        counts = [_jaxpr_flops(j) for j in subs]
        if eqn.primitive.name == "cond":
            d, o = max(counts, key=sum)
        else:
            d, o = sum(c[0] for c in counts), sum(c[1] for c in counts)
        times = eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1
        dot, other = dot + times * d, other + times * o
    return dot, other


def update_flops(cfg: dict) -> dict:
    import jax
    from acjax_ppo import make_config

    from acjax.cpu import dense
    from acjax.ppo_a2c import make_train

    batch = cfg["num_envs"] * cfg["num_steps"]
    config = make_config(cfg, batch)  # one update is all that is analysed
    trainer = make_train(config, dense=dense.for_backend())
    state = trainer.init(jax.random.PRNGKey(0))
    cost = jax.jit(trainer.update).lower(state).compile().cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    xla = float(cost.get("flops", float("nan"))) if cost else float("nan")
    dot, other = _jaxpr_flops(jax.make_jaxpr(trainer.update)(state).jaxpr)
    return dict(
        batch_size=batch,
        xla_cost_analysis_flops=xla,
        xla_flops_per_step=xla / batch,
        jaxpr_matmul_flops_per_step=dot / batch,
        jaxpr_other_flops_per_step=other / batch,
        jaxpr_flops_per_step=(dot + other) / batch,
    )


def measure(spec: dict, t0: float) -> dict:
    import acjax.cpu

    acjax.cpu.apply()  # before JAX's backend starts, as in every acjax command line
    import jax

    dev = jax.devices()[0]
    res = dict(
        framework="limits",
        workload="limits",
        backend=jax.default_backend(),
        device_kind=dev.device_kind,
        device_count=jax.device_count(),
        jax=jax.__version__,
        acjax_rolled_threefry=os.environ.get("ACJAX_ROLLED_THREEFRY"),
        import_seconds=since(t0),
    )
    res["matmul"] = peak_matmul(spec["matmul_n"], spec["matmul_calls"])
    res["rollout"] = {
        str(n): rollout_limit(n, spec["rollout_steps"], spec["rollout_calls"])
        for n in sorted(set(spec["env_counts"]))
    }
    res["update_flops"] = {name: update_flops(cfg) for name, cfg in spec["configs"].items()}
    res["seconds"] = since(t0)
    return res
