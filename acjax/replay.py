"""A uniform replay buffer that lives inside the jitted training state.

The public face of `acjax.core.replay`.
"""

from acjax.core import replay as _replay
from acjax.core.replay import *

__all__ = list(_replay.__all__)
