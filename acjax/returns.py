"""Advantage and return estimators over time-major rollouts that keep termination and
truncation apart: GAE, n-step, discounted and λ-returns, TD errors, V-trace and truncated
importance weights.

The public face of `acjax.core.returns`, where the functions and their documentation live;
importing it changes nothing in the importer's JAX.
"""

from acjax.core import returns as _returns
from acjax.core.returns import *

__all__ = list(_returns.__all__)
