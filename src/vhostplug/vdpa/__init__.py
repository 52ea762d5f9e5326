"""vDPA devices: discover them in sysfs and sort them into pools (for the device plugin, the CNI and DRA), find one
device's representor, move its netdev, plug the representor into OVS (see docs/vdpa.md). Imports nothing of ``cni``
or ``deviceplugin``: they import this."""
