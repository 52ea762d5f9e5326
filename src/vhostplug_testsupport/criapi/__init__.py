"""Generated CRI v1 stubs (subset); see proto/vhostplug_testsupport/criapi/api.proto."""
