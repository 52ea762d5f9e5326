"""The CNI plugin: the stdlib-only shim (shim.py), the spec's types and errors (spec.py) and the verbs (handler.py)."""
