"""Tests of vhostplug.podinfo."""
