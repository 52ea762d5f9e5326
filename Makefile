# The two commands of the README: `make test` and `make demo`. Both set everything up first.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup check test lint typecheck unit functional runtime fuzz e2e demo bench protos image clean

setup:
	@scripts/setup.sh

lint: setup
	$(BIN)/ruff check src tests bench

typecheck: setup
	$(BIN)/mypy --strict src

# the quick loop for a change that touches no root-only code: lint, types and every test that needs neither root nor
# OVS nor libvirtd (pytest marker `root`, given by tests/conftest.py); `make test` runs everything
check: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy --strict src
	$(BIN)/python -m pytest -q -ra -m "not root" tests/unit tests/fuzz tests/functional tests/runtime tests/e2e

test: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy --strict src
	$(BIN)/python -m pytest -ra tests/unit tests/fuzz tests/functional tests/runtime tests/e2e

unit: setup
	$(BIN)/python -m pytest -ra tests/unit

functional: setup
	$(BIN)/python -m pytest -ra tests/functional

runtime: setup
	$(BIN)/python -m pytest -ra tests/runtime

# generated inputs; VHOSTPLUG_FUZZ_SEED=<seed> reproduces a run, VHOSTPLUG_FUZZ_SCALE=<n> makes it n times bigger
fuzz: setup
	$(BIN)/python -m pytest -ra tests/fuzz

e2e: setup
	$(BIN)/python -m pytest -ra tests/e2e

demo: setup
	$(BIN)/vhostplug lab demo

bench: setup
	$(BIN)/python bench/cni_latency.py
	$(BIN)/python bench/dra_prepare.py
	$(BIN)/python bench/deviceplugin_allocate.py
	$(BIN)/python bench/migration_downtime.py
	$(BIN)/python bench/churn.py
	$(BIN)/python bench/vswitchd_restart.py
	$(BIN)/python bench/dataplane.py
	$(BIN)/python bench/footprint.py
	$(BIN)/python bench/runtime_sandbox.py

# the project's OCI image (build/vhostplug-<version>.oci.tar + .digest); cached, rebuilt when its inputs change
image: setup
	scripts/build-image.sh

protos: setup
	$(BIN)/python scripts/gen_protos.py

clean:
	-$(BIN)/vhostplug lab down
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
