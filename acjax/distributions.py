"""Action distributions for actor-critic policies: categorical, diagonal Gaussian and
tanh-squashed Gaussian.

The public face of `acjax.core.distributions`; importing it changes nothing in the importer's
JAX.
"""

from acjax.core import distributions as _distributions
from acjax.core.distributions import *

__all__ = list(_distributions.__all__)
