"""A faithful local stand-in for the Huawei Cloud DCS API (dcs-api.md).

The fleet and its backup history are a pure function of a seed and of the
time asked about. This package uses only the standard library and our signer:
no Django, so it starts and tests fast. ``manage.py dcs_simulator`` serves it.

    from backups.simulator.server import DcsSimulator, SimulatorServer
"""

from backups.simulator.api import DcsSimulator, UnknownInstance, UnknownProject
from backups.simulator.server import SimulatorServer

__all__ = ["DcsSimulator", "SimulatorServer", "UnknownInstance", "UnknownProject"]
