"""A2C: one gradient step on the whole rollout, the advantage actor-critic.

"Asynchronous Methods for Deep Reinforcement Learning" (Mnih et al. 2016,
https://arxiv.org/abs/1602.01783) in its synchronous form: the policy-gradient loss
`-log pi(a|s) A`, a value loss and an entropy bonus (`acjax.core.losses.a2c_loss`), one
optimizer step per rollout.
"""

from __future__ import annotations

from acjax.agents.onpolicy.config import PPOA2CConfig
from acjax.agents.onpolicy.loop import OnPolicyAgent
from acjax.core import losses

__all__ = ["AGENT"]


def _loss(config: PPOA2CConfig, hparams, batch, *, log_prob, entropy, value, advantage):
    del config
    return losses.a2c_loss(
        log_probs=log_prob, advantages=advantage, values=value, targets=batch.target,
        entropies=entropy, value_coef=hparams.vf_coef, entropy_coef=hparams.ent_coef,
        weights=batch.weight,
    )


def _validate(config: PPOA2CConfig) -> None:
    if config.update_epochs != 1 or config.num_minibatches != 1:
        raise ValueError(
            f"algo='a2c' takes one gradient step per rollout on the whole batch, but "
            f"update_epochs={config.update_epochs} and num_minibatches={config.num_minibatches}; "
            "set --update-epochs 1 --num-minibatches 1 (or use --algo ppo)"
        )
    if config.clip_value:
        raise ValueError(
            "clip_value=True is a PPO option; algo='a2c' has no old values to clip against; "
            "drop --clip-value"
        )


AGENT = OnPolicyAgent("a2c", _loss, _validate)
