"""The actor-learner family: IMPALA (V-trace) and A3C (asynchronous gradients).

`config` (ImpalaConfig, Trajectory, LearnerState), `presets`, `learner` (the pure loss and
update), `actors` (gymnax unrolls on a device, gymnasium environments on the host), `runtime`
(actor threads, the queue, the published parameters) and `loop` (the learner's step,
evaluation). The command line is `python -m acjax.impala` (`acjax.run.actor_learner`).
"""
