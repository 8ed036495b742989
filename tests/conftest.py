"""Shared test configuration: strict numerics, no implicit rank promotion."""

import jax

import acjax  # noqa: F401  (sets XLA flags before JAX's backend starts)

jax.config.update("jax_numpy_rank_promotion", "raise")
