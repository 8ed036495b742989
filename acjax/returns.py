"""Advantage and return estimators over time-major rollouts (GAE, n-step and
discounted returns, TD errors) that keep termination and truncation apart.

The public face of `acjax.core.returns`, where the functions and their documentation live;
importing it changes nothing in the importer's JAX.
"""

from __future__ import annotations

from acjax.core import returns as _returns
from acjax.core.returns import *

__all__ = list(_returns.__all__)
