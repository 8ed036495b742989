"""Actor-critic losses as pure functions, each returning `(loss, metrics)`.

The public face of `acjax.core.losses` (policy gradient, PPO, value, entropy, A2C / PPO totals)
and `acjax.core.offpolicy_losses` (Bellman, TD3 and SAC targets, critic, DPG, SAC actor,
temperature, Polyak averaging) and `acjax.core.search_losses` (AlphaZero's visit-count target
and loss); importing it changes nothing in the importer's JAX.
"""

from acjax.core import losses as _losses
from acjax.core import offpolicy_losses as _offpolicy_losses
from acjax.core import search_losses as _search_losses
from acjax.core.losses import *
from acjax.core.offpolicy_losses import *
from acjax.core.search_losses import *

__all__ = _losses.__all__ + _offpolicy_losses.__all__ + _search_losses.__all__
