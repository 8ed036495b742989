"""Typed configuration helpers: traced (vmappable) vs static fields, checks that name the
field, its value and the fix.

The public face of `acjax.core.config`.
"""

from acjax.core import config as _config
from acjax.core.config import *

__all__ = list(_config.__all__)
