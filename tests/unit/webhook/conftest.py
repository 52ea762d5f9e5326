"""The webhook as a cluster runs it, shared by this folder's tests: one `vhostplug webhook` process over TLS, reading
NADs through lightkube from a local HTTPS stand-in for kube-apiserver (started once for the package)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.webhook.pods import CUT_OFF, NADS
from vhostplug_testsupport.webhook import ApiServer, Webhook, running_api, start_webhook


@pytest.fixture(scope="package")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tls")


@pytest.fixture(scope="package")
def api(tls_dir: Path) -> Iterator[ApiServer]:
    with running_api(tls_dir, NADS) as fake:
        yield fake


@pytest.fixture(scope="package")
def webhook(api: ApiServer, tls_dir: Path) -> Iterator[Webhook]:
    hook = start_webhook(api, tls_dir)
    try:
        yield hook
    finally:
        hook.stop()


@pytest.fixture(scope="package")
def impatient_webhook(api: ApiServer, tls_dir: Path) -> Iterator[Webhook]:
    """One that cuts a client off after ``CUT_OFF`` seconds: for the tests of the cut-off."""
    hook = start_webhook(api, tls_dir, "--header-timeout", str(CUT_OFF), stem="impatient")
    try:
        yield hook
    finally:
        hook.stop()
