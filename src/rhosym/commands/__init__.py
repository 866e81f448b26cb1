"""Sub-commands of ``rhosym``; see :mod:`rhosym.cli`."""
