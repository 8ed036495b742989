"""Environments acjax steps inside its jitted programs: gymnax, and Brax through gymnax's API.

`make_env(name)` builds one (`acjax.envs.make`); `acjax.envs.gymnax` holds the wrappers,
`EnvSpec` and the running normalisers, `acjax.envs.brax` the Brax adapter. Importing this
package imports neither gymnax nor Brax: each is imported when a name first needs it.
"""

from acjax.envs import gymnax as _gymnax
from acjax.envs import make as _make
from acjax.envs.gymnax import *
from acjax.envs.make import *

__all__ = _gymnax.__all__ + _make.__all__
