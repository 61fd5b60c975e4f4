"""Model cards under their former name: the card schema and reader now live in the library module
:mod:`maedfer.cards` (the weights-by-name hub reads the cards); this module re-exports it."""

from ..cards import *  # noqa: F403
from ..cards import __all__  # noqa: F401
