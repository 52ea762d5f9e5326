"""vDPA attachments for the CNI: find the pool's device and its representor in sysfs, move its netdev, plug the
representor into OVS (see docs/vdpa.md)."""
