"""REINFORCE: the Monte-Carlo policy gradient over whole episodes, with or without a baseline.

"Simple Statistical Gradient-Following Algorithms for Connectionist Reinforcement Learning"
(Williams 1992): every update rolls `num_envs` environments out to the end of an episode
(`config.whole_episodes`: the steps after each episode's end are masked out), computes each
step's discounted return backwards from that end,

  Gₜ = rₜ + γ Gₜ₊₁   (Gₜ = rₜ at a termination),

and takes one gradient step on `-mean_t[(Gₜ - bₜ) log π(aₜ|sₜ)]` over the episodes' steps, with
the baseline `bₜ` (`config.baseline`):

* `none`: `bₜ = 0`, plain REINFORCE. An episode the time limit cuts is *cut*: its return stops
  at the limit (there is no critic to bootstrap from), a bias on environments whose limit a good
  policy reaches (documented, not hidden).
* `mean`: a running mean of the returns, `m ← d m + (1 - d) mean(G)` with `d =
  config.baseline_decay`, bias-corrected as Adam's moments; the batch's own returns enter it only
  after it served as their baseline.
* `value`: a learned `V(sₜ)` (REINFORCE with baseline): the critic regresses on `Gₜ` (weight
  `vf_coef`), and a truncated episode's return bootstraps from `V` of its last observation.

`normalize_advantages` standardises `Gₜ - bₜ` over the batch's valid steps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from acjax.agents.onpolicy.config import PPOA2CConfig
from acjax.agents.onpolicy.loop import OnPolicyAgent, UpdateInputs
from acjax.agents.rollout import Transition
from acjax.core import collectives, losses, returns

__all__ = ["AGENT", "monte_carlo_advantages"]


def _init_state(config: PPOA2CConfig):
    if config.baseline == "mean":
        # (running mean, bias correction 1 - d^k after k updates)
        return (jnp.float32(0.0), jnp.float32(0.0))
    return ()


def monte_carlo_advantages(config: PPOA2CConfig, hparams, traj: Transition,
                           inputs: UpdateInputs):
    """`(advantages[T, B], returns[T, B], agent_state)` of a whole-episode rollout.

    The returns are `acjax.core.returns.discounted_returns` with the critic's successor values
    where a baseline critic exists (truncation bootstraps from it) and zeros otherwise (a cut
    episode's return ends at the cut).
    """
    next_values = traj.next_value if config.baseline == "value" else jnp.zeros_like(
        traj.next_value)
    g = returns.discounted_returns(traj.reward, next_values, traj.terminated, traj.truncated,
                                   gamma=hparams.gamma)
    state = inputs.agent_state
    if config.baseline == "value":
        return g - traj.value, g, state
    if config.baseline == "none":
        return g, g, state
    mean, correction = state
    baseline = jnp.where(correction > 0, mean / jnp.maximum(correction, 1e-8), 0.0)
    w = jnp.ones_like(g) if inputs.weight is None else inputs.weight
    sums = collectives.total({"g": jnp.sum(g * w), "n": jnp.sum(w)}, inputs.axis_name)
    batch_mean = sums["g"] / jnp.maximum(sums["n"], 1.0)
    d = jnp.float32(config.baseline_decay)
    new_state = (d * mean + (1 - d) * batch_mean, d * correction + (1 - d))
    return g - jax.lax.stop_gradient(baseline), g, new_state


def _loss(config: PPOA2CConfig, hparams, batch, *, log_prob, entropy, value, advantage):
    value_coef = hparams.vf_coef if config.baseline == "value" else 0.0
    loss, metrics = losses.a2c_loss(
        log_probs=log_prob, advantages=advantage, values=value, targets=batch.target,
        entropies=entropy, value_coef=value_coef, entropy_coef=hparams.ent_coef,
        weights=batch.weight,
    )
    return loss, metrics


def _validate(config: PPOA2CConfig) -> None:
    if not config.whole_episodes:
        raise ValueError(
            "algo='reinforce' learns from whole episodes, but whole_episodes=False; pass "
            "--whole-episodes (and --num-steps at least the episode limit)"
        )
    if config.advantage != "mc":
        raise ValueError(
            f"advantage={config.advantage!r}: REINFORCE uses Monte-Carlo returns; pass "
            "--advantage mc (or use --algo a2c for bootstrapped estimators)"
        )
    if config.update_epochs != 1 or config.num_minibatches != 1:
        raise ValueError(
            f"algo='reinforce' takes one gradient step per batch of episodes, but update_epochs="
            f"{config.update_epochs} and num_minibatches={config.num_minibatches}; pass "
            "--update-epochs 1 --num-minibatches 1"
        )
    if config.clip_value:
        raise ValueError("clip_value=True is a PPO option; drop --clip-value")


AGENT = OnPolicyAgent("reinforce", _loss, _validate, advantages=monte_carlo_advantages,
                      init_state=_init_state)
