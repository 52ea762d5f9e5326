"""Dataplane backends behind the `vhostplug.protocols.Dataplane` seam, registered by name in `registry.BACKENDS`."""
