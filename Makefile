# Dispenser's tasks. CI (.ci/run) calls these same targets, so what passes
# here passes there. `make help` lists them.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
# Extra cargo flags; CI sets --locked so a stale Cargo.lock fails the run.
CARGO_FLAGS ?=
# Integration tests drive the real Docker Engine: cap how many run at once.
TEST_JOBS ?= 2
# Debian packages the test suite needs: the only list of them.
TEST_PACKAGES := busybox-static docker-registry pebble apache2-utils sqlite3 \
	curl ca-certificates openssl shellcheck python3-venv chromium bind9 bind9-dnsutils
# kubernetes-validate (PyPI) checks the exported Kubernetes manifests
# (tests/export.rs): `make deps` puts it in this venv, where the test looks.
KUBERNETES_VALIDATE_VENV := target/ci-tools/kubernetes-validate
# `make soak`: how long the soak test runs, in seconds (`make test` runs it with
# the default; `make soak SOAK_SECONDS=1800` soaks for half an hour).
SOAK_SECONDS ?= 60
# `make fuzz`: seconds per target, and the targets (fuzz/fuzz_targets/*.rs).
FUZZ_TIME ?= 30
FUZZ_TARGETS ?= render loader cron image values
# Extra Debian packages for `make bench`.
BENCH_PACKAGES := wrk nghttp2-client openssl nginx caddy docker-registry
# The example builds its images from busybox-static and runs its own registry.
EXAMPLE_PACKAGES := busybox-static docker-registry curl
EXAMPLE_CONFIG := example/dispenser.toml
# Extra flags `make example` passes to Dispenser (`--test` only checks the files).
EXAMPLE_FLAGS ?=
# The proxy's ports in the example (`dispenser dev` takes them from its flags).
EXAMPLE_HTTP_PORT := 8088
EXAMPLE_HTTPS_PORT := 8443
# `dispenser dev` keeps its state (the development CA among it) here.
EXAMPLE_STATE := example/.dispenser
EXAMPLE_PID_FILE := example/dispenser-dev.pid
DISPENSER_RELEASE := target/release/dispenser
# The binary `make example` runs. Another one (a test passes its debug build)
# skips the release build.
DISPENSER ?= $(DISPENSER_RELEASE)

# sudo only when not root (CI runs as root and may have no sudo).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
APT_INSTALL := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends
HAVE_NEXTEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo yes)
# CI (CI=true, as .ci/run runs, or NEXTEST_PROFILE=ci) runs the suite under
# nextest only: its per-test timeout stops a hung test and every failure is
# reported. There `make test-run` and `make soak` fail rather than fall back.
NEXTEST_REQUIRED := $(if $(filter true 1 yes,$(CI))$(filter ci,$(NEXTEST_PROFILE)),yes)
# The nextest profile (.config/nextest.toml), passed on the command line so the
# run's first lines say which one applies.
NEXTEST_PROFILE_FLAG := $(if $(NEXTEST_PROFILE),--profile $(NEXTEST_PROFILE))
define no-nextest-in-ci
	@echo "cargo-nextest not found ($(CARGO) nextest --version failed): in CI (CI=$(CI) NEXTEST_PROFILE=$(NEXTEST_PROFILE))" >&2
	@echo "the suite runs under nextest only, never plain cargo test. Install it: cargo install --locked cargo-nextest (.ci/run does)." >&2
	@exit 1
endef

.PHONY: help deps deps-example deps-bench deps-package build lint lint-scripts lint-systemd test test-run soak test-package images example example-push example-clean status-screenshot bench bench-scale deb rpm build-deb build-rpm man completions package-docs fuzz

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

# install-missing PACKAGES: apt-get update + install, only if one is missing.
define install-missing
	missing=(); \
	for package in $(1); do \
	  dpkg-query -W -f='$${Status}' "$$package" 2>/dev/null | grep -q 'ok installed' || missing+=("$$package"); \
	done; \
	if (( $${#missing[@]} )); then \
	  echo "installing: $${missing[*]}"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q; \
	  $(APT_INSTALL) "$${missing[@]}"; \
	else \
	  echo "packages present: $(strip $(1))"; \
	fi
endef

deps: ## install the Debian packages the tests need (apt; sudo if not root), and kubernetes-validate (pip, in a venv under target/)
	@$(call install-missing,$(TEST_PACKAGES))
	@if ! $(KUBERNETES_VALIDATE_VENV)/bin/kubernetes-validate --version >/dev/null 2>&1; then \
	  echo "installing kubernetes-validate into $(KUBERNETES_VALIDATE_VENV) (pip)"; \
	  python3 -m venv $(KUBERNETES_VALIDATE_VENV); \
	  $(KUBERNETES_VALIDATE_VENV)/bin/pip install -q kubernetes-validate; \
	fi

deps-example: ## install the Debian packages the example needs
	@$(call install-missing,$(EXAMPLE_PACKAGES))

deps-bench: ## install the Debian packages the benchmarks need
	@$(call install-missing,$(BENCH_PACKAGES))

build: ## build the release binary (target/release/dispenser)
	$(CARGO) build --release $(CARGO_FLAGS)

lint: lint-scripts lint-systemd ## rustfmt, clippy (warnings are errors), scripts, systemd unit
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets $(CARGO_FLAGS) -- -D warnings

# Every shell script in the repository: .ci/run and the tracked *.sh files.
lint-scripts: ## shellcheck the shell scripts (skipped without shellcheck)
	@if ! command -v shellcheck >/dev/null; then \
	  echo "shellcheck not found (make deps installs it): scripts not checked"; exit 0; \
	fi; \
	scripts=(.ci/run packaging/scripts/* $$(git ls-files '*.sh' 2>/dev/null || find . -name '*.sh' -not -path './target/*')); \
	shellcheck "$${scripts[@]}"; \
	echo "shell scripts: ok ($${#scripts[@]} checked)"

# `systemd-analyze verify` complains that /usr/bin/dispenser is missing on a
# machine where it is not installed: that line is expected, anything else fails.
lint-systemd: ## check systemd/dispenser.service (skipped without systemd-analyze)
	@if ! command -v systemd-analyze >/dev/null; then \
	  echo "systemd-analyze not found: unit check skipped"; exit 0; \
	fi; \
	report="$$(systemd-analyze verify systemd/dispenser.service 2>&1 || true)"; \
	problems="$$(grep -v 'Command /usr/bin/dispenser is not executable' <<<"$$report" || true)"; \
	if [[ -n "$$problems" ]]; then echo "$$problems" >&2; exit 1; fi; \
	echo "systemd/dispenser.service: ok"

test: deps lint test-package test-run soak ## install test deps, lint, run every test, then the soak

# Doctests first, so the suite's own summary is the last thing printed.
# Without nextest (outside CI only), plain cargo test with --no-fail-fast, so
# a failing test binary does not hide the failures of the next ones.
test-run: ## run the test suite only (doctests, then nextest; cargo test without nextest, never in CI)
ifeq ($(HAVE_NEXTEST),yes)
	$(CARGO) test --workspace $(CARGO_FLAGS) --doc
	$(CARGO) nextest run --workspace $(CARGO_FLAGS) $(NEXTEST_PROFILE_FLAG) -j $(TEST_JOBS) --no-tests=fail
else ifeq ($(NEXTEST_REQUIRED),yes)
	$(no-nextest-in-ci)
else
	$(CARGO) test --workspace $(CARGO_FLAGS) --no-fail-fast -- --test-threads=$(TEST_JOBS)
endif

# The soak is an ignored test (too long for a plain `cargo test`): deploys,
# reloads, cron runs and kills of the daemon under load for SOAK_SECONDS.
# Both runners fail when no test ran (a renamed soak test must not pass
# silently): nextest through --no-tests=fail, cargo test (outside CI only)
# through its summary line, which must count at least one passed test.
soak: ## run the soak test for SOAK_SECONDS (default 60) seconds
ifeq ($(HAVE_NEXTEST),yes)
	SOAK_SECONDS=$(SOAK_SECONDS) $(CARGO) nextest run -p dispenser --test runtime $(CARGO_FLAGS) \
	  $(NEXTEST_PROFILE_FLAG) --run-ignored only --no-tests=fail --success-output final soak_
else ifeq ($(NEXTEST_REQUIRED),yes)
	$(no-nextest-in-ci)
else
	out="$$(mktemp)"; trap 'rm -f "$$out"' EXIT; \
	SOAK_SECONDS=$(SOAK_SECONDS) $(CARGO) test -p dispenser --test runtime $(CARGO_FLAGS) \
	  soak_ -- --ignored --nocapture 2>&1 | tee "$$out"; \
	if ! grep -Eq '^test result: ok\. [1-9][0-9]* passed' "$$out"; then \
	  echo "make soak: no soak test ran (no test matches soak_ among the ignored tests of tests/runtime)" >&2; exit 1; \
	fi
endif

deps-package: ## install cargo-deb and cargo-generate-rpm when missing (from crates.io)
	@command -v cargo-deb >/dev/null || $(CARGO) install --locked cargo-deb
	@command -v cargo-generate-rpm >/dev/null || $(CARGO) install --locked cargo-generate-rpm

man: ## generate the man page from the CLI definitions (target/man/dispenser.1)
	$(CARGO) build $(CARGO_FLAGS)
	mkdir -p target/man
	target/debug/dispenser man > target/man/dispenser.1

completions: ## generate shell completions (target/completions/)
	$(CARGO) build $(CARGO_FLAGS)
	mkdir -p target/completions
	target/debug/dispenser completions bash > target/completions/dispenser.bash
	target/debug/dispenser completions zsh > target/completions/_dispenser
	target/debug/dispenser completions fish > target/completions/dispenser.fish

# The man page and completions the packages ship, from the release binary.
package-docs: build
	mkdir -p target/man target/completions
	target/release/dispenser man > target/man/dispenser.1
	target/release/dispenser completions bash > target/completions/dispenser.bash
	target/release/dispenser completions zsh > target/completions/_dispenser
	target/release/dispenser completions fish > target/completions/dispenser.fish

deb: build package-docs ## build the Debian package (target/debian/)
	@command -v cargo-deb >/dev/null || $(CARGO) install --locked cargo-deb
	$(CARGO) deb --no-build

rpm: build package-docs ## build the RPM package (target/generate-rpm/)
	@command -v cargo-generate-rpm >/dev/null || $(CARGO) install --locked cargo-generate-rpm
	$(CARGO) generate-rpm

# ixpantia/dispenser's names for the same targets.
build-deb: deb ## the same as `make deb` (ixpantia/dispenser's name)
build-rpm: rpm ## the same as `make rpm` (ixpantia/dispenser's name)

# Installs, upgrades, removes and purges the .deb on this machine: root only
# (CI runs as root); skipped with a message otherwise.
test-package: deb ## build the .deb and test install, upgrade, remove, purge
	bash tests/packaging/deb.sh

images: ## build the local images the integration tests use
	bash tests/images/build.sh

example: deps-example ## run the example: its images, its registry, Dispenser (`dispenser dev`) on example/
	bash example/build-images.sh
ifeq ($(DISPENSER),$(DISPENSER_RELEASE))
	$(CARGO) build --release $(CARGO_FLAGS)
endif
ifeq ($(filter --test,$(EXAMPLE_FLAGS)),--test)
	$(DISPENSER) -c $(EXAMPLE_CONFIG) $(EXAMPLE_FLAGS)
else
	bash example/registry.sh start
	bash example/registry.sh publish first
	@echo
	@echo "Running Dispenser on $(EXAMPLE_CONFIG); Ctrl-C stops it and the example's containers."
	@echo "Then open:"
	@echo "  http://localhost:$(EXAMPLE_HTTP_PORT)/    the web page, through Dispenser's proxy"
	@echo "  https://localhost:$(EXAMPLE_HTTPS_PORT)/   the same over HTTPS, signed by the dev CA:"
	@echo "      curl --cacert $(EXAMPLE_STATE)/dev/dev-ca.crt https://localhost:$(EXAMPLE_HTTPS_PORT)/"
	@echo "In another terminal, make example-push pushes the next version: watch the page change."
	@echo "Ask the API from inside the web container:"
	@echo "  docker exec web wget -qO- http://api:8000/status.json"
	@echo
	$(DISPENSER) -c $(EXAMPLE_CONFIG) -p $(EXAMPLE_PID_FILE) $(EXAMPLE_FLAGS) \
	  dev --http-port $(EXAMPLE_HTTP_PORT) --https-port $(EXAMPLE_HTTPS_PORT)
endif

example-push: ## build the next version of the example's web page and push it to the example's registry
	bash example/registry.sh publish next

# Everything Dispenser creates for the example carries its instance label
# (`dispenser dev` runs it as instance `example-dev`).
example-clean: ## stop the example and remove all it made: containers, networks, volume, registry, state
	@if [[ -f $(EXAMPLE_PID_FILE) ]] && kill -0 "$$(cat $(EXAMPLE_PID_FILE))" 2>/dev/null; then \
	  echo "stopping Dispenser (pid $$(cat $(EXAMPLE_PID_FILE)))"; \
	  kill -TERM "$$(cat $(EXAMPLE_PID_FILE))"; \
	  for _ in $$(seq 100); do kill -0 "$$(cat $(EXAMPLE_PID_FILE) 2>/dev/null)" 2>/dev/null || break; sleep 0.1; done; \
	fi
	for instance in example example-dev; do \
	  docker ps -aq --filter label=dispenser.instance=$$instance | xargs -r docker rm -f; \
	  docker network ls -q --filter label=dispenser.instance=$$instance | xargs -r docker network rm; \
	done
	docker volume ls -q --filter name=dispenser-example-db-data | xargs -r docker volume rm
	bash example/registry.sh stop
	docker images -q "$$(sed -n 's/^registry *= *"\(.*\)".*/\1/p' example/dispenser.vars)/dispenser-example/web" | sort -u | xargs -r docker rmi -f
	rm -rf $(EXAMPLE_STATE) $(EXAMPLE_PID_FILE)

status-screenshot: ## regenerate docs/status-page.png (the status page test's screenshot in headless Chromium)
	$(CARGO) nextest run -p dispenser --test runtime -E 'test(status_page_draws_deploys_rollbacks_runs_and_dependencies_in_chromium)'
	cp target/tmp/status-page.png docs/status-page.png

bench: deps-bench ## run the benchmarks (proxy vs nginx, Caddy, direct, over HTTP/1.1, HTTPS and HTTP/2; deploy timing; scale; writes docs/BENCHMARKS.md)
	bash bench/proxy.sh
	bash bench/proxy-tls.sh
	bash bench/deploy.sh
	bash bench/scale.sh

bench-scale: deps-bench ## the scale benchmark only: 50 services, READY times, idle cost (docs/BENCHMARKS.md)
	bash bench/scale.sh

# cargo-fuzz needs a nightly toolchain; without one (or without cargo-fuzz)
# the target says so and succeeds: the property tests in `make test` cover
# the same parsers for a bounded number of cases. Builds in target/fuzz.
fuzz: ## fuzz each parser for FUZZ_TIME seconds (needs nightly and cargo-fuzz)
	@if ! $(CARGO) +nightly --version >/dev/null 2>&1; then \
	  echo "no nightly toolchain (rustup toolchain install nightly): fuzzing skipped"; exit 0; \
	fi; \
	if ! $(CARGO) +nightly fuzz --version >/dev/null 2>&1; then \
	  echo "cargo-fuzz not found (cargo install cargo-fuzz): fuzzing skipped"; exit 0; \
	fi; \
	for target in $(FUZZ_TARGETS); do \
	  echo "== fuzzing $$target for $(FUZZ_TIME) s"; \
	  mkdir -p "fuzz/corpus/$$target"; \
	  $(CARGO) +nightly fuzz run --sanitizer none --target-dir target/fuzz "$$target" \
	    "fuzz/corpus/$$target" "fuzz/seeds/$$target" \
	    -- -max_total_time=$(FUZZ_TIME) -max_len=4096 -timeout=10 -rss_limit_mb=2048; \
	done
