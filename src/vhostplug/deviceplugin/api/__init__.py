"""Generated kubelet device plugin v1beta1 stubs (scripts/gen_protos.py from proto/vhostplug/deviceplugin/api)."""
