"""The shared tier for many mounts of one account (``--shared redis://...``): listings, known files, blocks
and the API budget, shared through Redis. Optional: needs the ``fleet`` extra (the ``redis`` package)."""

from mmfs.fleet.fleet import Fleet, fleet_status
from mmfs.fleet.link import FleetError

__all__ = ["Fleet", "FleetError", "fleet_status"]
