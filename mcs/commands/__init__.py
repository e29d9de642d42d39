"""The commands: ``mcs`` (``mcs run``, ``mcs status``, ``mcs mesh``) and ``kubectl mcs``."""
