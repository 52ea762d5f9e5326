"""Helpers shared by the test suites and the benchmarks (private OVS fixtures, containerd, fake kubelet peers).

Installed with the project so that `bench/*.py` and `tests/` import them the same way, without editing sys.path.
Nothing in `vhostplug` imports this package.
"""
