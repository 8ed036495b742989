"""Off-policy actor-critics: one shared loop with a replay buffer in the state (`loop`), the
shared configuration (`config`), one file per agent (`sac`; `td3`, which is also DDPG) and
their presets (`presets`).
"""
