"""`python -m vhostplug.podinfo`: the same as `vhostplug podinfo` (standard library only)."""

import sys

from vhostplug.podinfo.main import main

sys.exit(main())
