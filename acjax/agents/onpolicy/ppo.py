"""PPO: the clipped surrogate objective, epochs of minibatch SGD on each rollout.

"Proximal Policy Optimization Algorithms" (Schulman et al. 2017,
https://arxiv.org/abs/1707.06347): the policy loss `-min(r A, clip(r, 1 - eps, 1 + eps) A)`
with `r = pi(a|s) / pi_old(a|s)`, a value loss (optionally clipped around the rollout's
values) and an entropy bonus (`acjax.core.losses.ppo_loss`).
"""

from __future__ import annotations

from acjax.agents.onpolicy.config import PPOA2CConfig
from acjax.agents.onpolicy.loop import OnPolicyAgent
from acjax.core import losses

__all__ = ["AGENT"]


def _loss(config: PPOA2CConfig, hparams, batch, *, log_prob, entropy, value, advantage):
    return losses.ppo_loss(
        log_probs=log_prob, old_log_probs=batch.log_prob, advantages=advantage, values=value,
        old_values=batch.value, targets=batch.target, entropies=entropy,
        clip_eps=hparams.clip_eps,
        value_coef=hparams.vf_coef,
        entropy_coef=hparams.ent_coef,
        value_clip_eps=hparams.value_clip_eps if config.clip_value else None,
        weights=batch.weight,
    )


def _validate(config: PPOA2CConfig) -> None:
    if config.clip_eps <= 0:
        raise ValueError(
            f"clip_eps={config.clip_eps} must be positive for PPO; typical values are 0.1-0.3"
        )


AGENT = OnPolicyAgent("ppo", _loss, _validate)
