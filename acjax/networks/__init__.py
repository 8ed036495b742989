"""Networks of the actor-critic family (flax linen), with pure functions the trainers call.

`acjax.networks.actor_critic`: the on-policy actor-critic (separate or shared, categorical or
Gaussian heads); `acjax.networks.offpolicy`: Q-ensembles and the deterministic and
squashed-Gaussian actors of SAC, TD3 and DDPG; `acjax.networks.layers`: activations, the dense
layer and MLPs; `acjax.networks.regulator`: the linear-Gaussian actor and quadratic critic of
the 1-D regulator ("Regulator1D-v0"). The networks take their dense layer as an argument
(default: plain `x @ kernel + bias`).
"""

from acjax.networks import actor_critic as _actor_critic
from acjax.networks import layers as _layers
from acjax.networks import offpolicy as _offpolicy
from acjax.networks import regulator as _regulator
from acjax.networks.actor_critic import *
from acjax.networks.layers import *
from acjax.networks.offpolicy import *
from acjax.networks.regulator import *

__all__ = _actor_critic.__all__ + _layers.__all__ + _offpolicy.__all__ + _regulator.__all__
