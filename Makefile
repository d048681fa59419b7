# The two commands README.md starts with: `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= $(CURDIR)/.venv
export KVM_IMAGES_VENV := $(VENV)

.PHONY: setup demo test sanity units integration package lint docs oldest newest clean

setup:
	tools/setup-host.sh

demo: setup
	tools/run-demo.sh

test: setup
	tools/run-tests.sh sanity units integration package lint docs oldest newest

sanity: setup
	tools/run-tests.sh sanity

units: setup
	tools/run-tests.sh units

integration: setup
	tools/run-tests.sh integration

package: setup
	tools/run-tests.sh package

lint: setup
	tools/run-tests.sh lint

docs: setup
	tools/run-tests.sh docs

oldest: setup
	tools/run-tests.sh oldest

newest: setup
	tools/run-tests.sh newest

clean:
	rm -rf build tests/output
