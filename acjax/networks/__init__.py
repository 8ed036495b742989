"""Networks of the actor-critic family (flax linen), with pure functions the trainers call.

`acjax.networks.actor_critic`: the on-policy actor-critic (separate or shared, categorical or
Gaussian heads); `acjax.networks.offpolicy`: Q-ensembles and the deterministic and
squashed-Gaussian actors of SAC, TD3 and DDPG; `acjax.networks.layers`: activations, the dense
layer and MLPs. The networks take their dense layer as an argument (default: plain
`x @ kernel + bias`).
"""

from acjax.networks import actor_critic as _actor_critic
from acjax.networks import layers as _layers
from acjax.networks import offpolicy as _offpolicy
from acjax.networks.actor_critic import *
from acjax.networks.layers import *
from acjax.networks.offpolicy import *

__all__ = _actor_critic.__all__ + _layers.__all__ + _offpolicy.__all__
