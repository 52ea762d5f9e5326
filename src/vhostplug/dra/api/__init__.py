"""Generated stubs of kubelet's DRA and plugin registration gRPC APIs (scripts/gen_protos.py from proto/vhostplug/dra/api)."""
