"""Tests of vhostplug.kuryr."""
