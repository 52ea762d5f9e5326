"""The node agent: one asyncio process serving the CNI shim, the device plugin and metrics."""
