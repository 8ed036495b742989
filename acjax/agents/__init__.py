"""The algorithm families: each builds the one `Trainer` (`acjax.agents.base`) from its
configuration.

* `acjax.agents.onpolicy`: the shared rollout-advantage-SGD loop and its agents (PPO, A2C,
  REINFORCE, the one-step actor-critic);
* `acjax.agents.offpolicy`: the shared collect-store-sample-update loop and its agents (SAC,
  TD3 and DDPG);
* `acjax.agents.rollout`, `acjax.agents.common`: pieces the families share (rollouts, the
  gradient step, greedy evaluation, chunking).

Agents import the layers below them (`acjax.core`, `acjax.envs`, `acjax.networks`) and never
the command line (`acjax.run`) or the CPU settings (`acjax.cpu`).
"""
