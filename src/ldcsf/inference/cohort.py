"""Moved to `ldcsf.wholeslide.cohort`; this path still works, with a DeprecationWarning."""

from ldcsf.utils.moved import alias_module

alias_module(__name__, "ldcsf.wholeslide.cohort")
