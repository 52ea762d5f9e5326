"""Kuryr / os-vif compatibility: Neutron vhostuser port bindings and os-vif VIFVHostUser objects -> attachments."""
