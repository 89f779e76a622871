"""`ldcsf view`: a local web viewer for slides, their maps, hotspots and the cohort."""

from .outputs import OutputFolder
from .server import make_server, server_address

__all__ = ["OutputFolder", "make_server", "server_address"]
