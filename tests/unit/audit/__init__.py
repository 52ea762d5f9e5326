"""Tests of vhostplug.audit."""
