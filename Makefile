# The two commands README.md starts with: `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= $(CURDIR)/.venv
export KVM_IMAGES_VENV := $(VENV)
PHASES := sanity units differential integration package lint docs oldest newest

.PHONY: setup demo test $(PHASES) clean

setup:
	tools/setup-host.sh

demo: setup
	tools/run-demo.sh

test: setup
	tools/run-tests.sh $(PHASES)

# One test phase: make sanity, make docs, ...
$(PHASES): setup
	tools/run-tests.sh $@

clean:
	rm -rf build tests/output
