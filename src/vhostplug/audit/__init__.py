"""Audit of a node's vhost-user ports and VMs, and migration of VMs between vhost-user modes."""
