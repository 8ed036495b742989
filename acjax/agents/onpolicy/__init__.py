"""On-policy actor-critics: one shared loop (`loop`), one small file per agent (`ppo`, `a2c`,
`reinforce`, `ac`), their configuration (`config`) and presets (`presets`).

A new on-policy agent is a new file here defining an `OnPolicyAgent` (its loss, its checks,
optionally its advantage estimator), its defaults and presets in `presets.py`, and one line in
`acjax.run.registry`. docs/architecture.md walks through it.
"""
