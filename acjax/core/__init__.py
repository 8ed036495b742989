"""The pure core: JAX functions that import nothing of acjax above them.

Estimators (`returns`), losses (`losses`, `offpolicy_losses`), distributions, the replay
buffer, the configuration helpers and the collectives for one optional mapped axis. Each is
usable on its own in any JAX program; importing them changes nothing in the importer's JAX.
"""
