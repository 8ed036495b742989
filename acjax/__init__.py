"""acjax: JAX-native, purely functional, high-throughput actor-critic library and trainer.

Importing acjax (or its pure library: `acjax.returns`, `acjax.losses`, `acjax.distributions`,
`acjax.networks`) changes nothing in the importer's JAX: no flag, no lowering, no backend.
The command lines apply their CPU settings themselves (`acjax.cpu.apply`).

Layers, each importing only the ones below it: `acjax.core` (pure JAX) -> `acjax.envs` ->
`acjax.networks` -> `acjax.agents` (the algorithm families) -> `acjax.run` (command lines, run
directories, devices, checkpoints); `acjax.cpu` holds opt-in CPU speed settings. See
docs/architecture.md.
"""

__version__ = "0.1.0"
