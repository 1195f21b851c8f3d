# The two commands a user runs: `make up` and `make test`. Both install what
# is missing first (Debian packages as root; Python wheels through Bazel).
SHELL := /bin/bash
BAZEL ?= bazel
UV_VERSION := 0.13.9
BAZEL_FLAGS := $(if $(CI),--config=ci,)

.PHONY: all bootstrap test build lock up down clean

all: test

bootstrap:
	@tools/bootstrap/install.sh

build: bootstrap
	$(BAZEL) build $(BAZEL_FLAGS) //...

test: bootstrap
	$(BAZEL) test $(BAZEL_FLAGS) //...

# Re-resolves requirements.in into the hash-locked requirements_lock.txt.
lock: bootstrap
	@python3 -m uv --version 2>/dev/null | grep -q "$(UV_VERSION)" || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	python3 -m uv pip compile --quiet --generate-hashes \
	  --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  --overrides third_party/lock_overrides.txt \
	  --custom-compile-command "make lock" \
	  requirements.in -o requirements_lock.txt

# The local attested serving cluster (sim platform). STATE survives restarts;
# DETACH=1 runs it in the background (stop it with `make down`).
STATE ?= $(CURDIR)/.state
up: bootstrap
	$(BAZEL) build $(BAZEL_FLAGS) //deploy/local:up //services/cli:s3mlctl
	@mkdir -p "$(STATE)" && chmod 700 "$(STATE)"
	@if [ -n "$(DETACH)" ]; then \
	  nohup bazel-bin/deploy/local/up --state-dir "$(STATE)" > "$(STATE)/up.log" 2>&1 & echo $$! > "$(STATE)/up.pid"; \
	  for i in $$(seq 1 600); do grep -q "Press Ctrl-C" "$(STATE)/up.log" 2>/dev/null && break; \
	    kill -0 $$(cat "$(STATE)/up.pid") 2>/dev/null || { cat "$(STATE)/up.log"; exit 1; }; sleep 0.5; done; \
	  cat "$(STATE)/up.log"; echo "running in the background (pid $$(cat "$(STATE)/up.pid")); stop it with: make down"; \
	else bazel-bin/deploy/local/up --state-dir "$(STATE)"; fi

down:
	@if [ -f "$(STATE)/up.pid" ] && kill -0 $$(cat "$(STATE)/up.pid") 2>/dev/null; then \
	  kill $$(cat "$(STATE)/up.pid"); while kill -0 $$(cat "$(STATE)/up.pid") 2>/dev/null; do sleep 0.5; done; \
	  rm -f "$(STATE)/up.pid"; echo "make down: the local cluster is stopped"; \
	else echo "make down: no background cluster (make up DETACH=1) is running"; fi

clean:
	$(BAZEL) clean
