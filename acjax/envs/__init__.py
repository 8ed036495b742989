"""Environments acjax steps inside its jitted programs: gymnax, Brax through gymnax's API, and
acjax's own.

`make_env(name)` builds one (`acjax.envs.make`); `acjax.envs.gymnax` holds the wrappers,
`EnvSpec` and the running normalisers, `acjax.envs.brax` the Brax adapter,
`acjax.envs.regulator` the 1-D regulator "Regulator1D-v0" (a linear-quadratic teaching task with
its optimum in closed form). Importing this package imports neither gymnax nor Brax: each is
imported when a name first needs it.
"""

from acjax.envs import gymnax as _gymnax
from acjax.envs import make as _make
from acjax.envs import regulator as _regulator
from acjax.envs.gymnax import *
from acjax.envs.make import *
from acjax.envs.regulator import *

__all__ = _gymnax.__all__ + _make.__all__ + _regulator.__all__
