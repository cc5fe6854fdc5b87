"""The demo CDP: a simulated project-management company behind a Segment-compatible HTTP server."""

from console.demo.server import DemoCDP
from console.demo.simulator import Simulator

__all__ = ["DemoCDP", "Simulator"]
