"""The ``modelberth`` command line and ``modelberth up``, the local stack supervisor.

Not a service and not shared by the services: core holds what every process does alike; this package is
the one process a person starts. It imports only ``modelberth_core``; every other command and service comes
from the installed packages' entry points (groups ``modelberth.commands`` and ``modelberth.services``).
"""
