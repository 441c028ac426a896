# Saga's build, test and packaging entry points. `make help` lists them.

SHELL := /bin/bash
.DEFAULT_GOAL := help

GO       ?= go
BIN      := bin/saga
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null | sed 's/^v//' || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# The build date is the last commit's, so builds are reproducible.
DATE     ?= $(shell git log -1 --format=%cI 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)
GOFLAGS_BUILD := -trimpath -ldflags "$(LDFLAGS)"
BUILD_SAGA := CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $(BIN) ./cmd/saga
GOLANGCI_LINT_VERSION := v2.15.0

# Root, or sudo when there is one: for installing test dependencies with apt.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

##@ Development

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z0-9_-]+:.*##/ {printf "  \033[36m%-22s\033[0m %s\n", $$1, $$2} /^##@/ {printf "\n%s\n", substr($$0, 5)}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/saga, stamped with version, commit and date
	$(BUILD_SAGA)

.PHONY: run
run: build ## Run Saga in the foreground on 127.0.0.1:8030 (embedded store)
	./$(BIN) serve

# saga-watch rebuilds when a Go file that goes into bin/saga, go.mod or
# go.sum is changed, added or removed; a failed build leaves the running
# server alone. It waits on inotifywait when there is one and polls every
# second otherwise: no tool to install. Ctrl-C reaches the server too, which
# drains and exits; the loop waits for it, then stops.
WATCH_DIRS := cmd pkg init

.PHONY: saga-watch
saga-watch: build ## Run Saga like `make run`, rebuilt and restarted whenever a Go file changes (Ctrl-C stops)
	@pid=; stamp=$$(mktemp); next=$$(mktemp); \
	gofiles() { find $(WATCH_DIRS) -name '*.go' ! -name '*_test.go' -print | LC_ALL=C sort | cksum; }; \
	changed() { [ "$$(gofiles)" != "$$seen" ] || [ -n "$$(find $(WATCH_DIRS) go.mod go.sum -newer "$$stamp" \( -name go.mod -o -name go.sum -o -name '*.go' \) ! -name '*_test.go' -print | head -n 1)" ]; }; \
	start() { ./$(BIN) serve & pid=$$!; }; \
	stop() { if [ -n "$$pid" ]; then kill $$pid 2>/dev/null; wait $$pid 2>/dev/null; pid=; fi; }; \
	cleanup() { rm -f "$$stamp" "$$next"; }; \
	trap 'if [ -n "$$pid" ]; then wait $$pid 2>/dev/null; fi; cleanup; exit 0' INT; \
	trap 'stop; cleanup; exit 143' TERM; \
	if command -v inotifywait >/dev/null 2>&1; then \
		how="inotifywait"; pause() { inotifywait -qq -r -t 10 -e close_write,create,delete,move $(WATCH_DIRS) go.mod go.sum || sleep 1; }; \
	else how="polling every second"; pause() { sleep 1; }; fi; \
	echo "make saga-watch: watching $(WATCH_DIRS), go.mod and go.sum ($$how); Ctrl-C stops"; \
	seen=$$(gofiles); start; \
	while :; do \
		touch "$$next"; \
		if ! changed; then pause; continue; fi; \
		mv -f "$$next" "$$stamp"; next=$$(mktemp); seen=$$(gofiles); \
		echo "make saga-watch: Go files changed; rebuilding"; \
		if $(BUILD_SAGA); then stop; start; \
		else echo "make saga-watch: the build failed; the running saga keeps serving until the next change"; fi; \
	done

.PHONY: test
test: test-deps ## Run every test under the race detector (installs what the tests run when missing)
	$(GO) vet ./...
	SAGA_SCREENSHOTS=$(CURDIR)/bin/ui-screenshots $(GO) test -race -count=1 -timeout 30m ./...

.PHONY: ui-screenshots
ui-screenshots: test-deps ## Take the console's screenshots again into docs/ui (make test puts them in bin/ui-screenshots)
	SAGA_SCREENSHOTS=$(CURDIR)/docs/ui $(GO) test -count=1 -run 'TestConsole' ./cmd/saga

.PHONY: test-deps
# TEST_TOOLS maps each command the tests run to the Debian package that has
# it: real Redis, Prometheus, DNS tools, a headless browser, curl.
TEST_TOOLS := redis-server:redis-server redis-sentinel:redis-sentinel redis-cli:redis-tools \
	prometheus:prometheus dig:bind9-dnsutils dnsperf:dnsperf chromium:chromium curl:curl npm:npm
test-deps: ## Install what the tests need (Redis, Prometheus, dig, dnsperf, chromium, curl) when missing
	@missing=""; \
	for tool in $(TEST_TOOLS); do command -v $${tool%%:*} >/dev/null || missing="$$missing $${tool#*:}"; done; \
	if [ -n "$$missing" ]; then \
		echo "make: installing$$missing with apt (the tests run the real programs)"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		$(SUDO) systemctl disable --now redis-server redis-sentinel prometheus >/dev/null 2>&1 || true; \
	fi
	@# axe-core, which the console's browser test runs in the page, from the lock file.
	@[ -d cmd/saga/testdata/axe/node_modules/axe-core ] || npm ci --prefix cmd/saga/testdata/axe --no-audit --no-fund

.PHONY: lint
lint: ## gofmt, go vet and the pinned golangci-lint
	@out=$$(gofmt -l cmd internal pkg test 2>/dev/null); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION) run ./...

.PHONY: bench
bench: ## Go benchmarks of the hot paths (lookup, heartbeat, register)
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/...

# STORE=redis runs it against a saga on a throwaway redis-server instead.
STORE ?= embedded
.PHONY: bench-load
bench-load: build ## The load tool against a fresh saga on a free port, beside a bare HTTP ceiling (STORE=redis: on Redis)
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o bin/saga-bench ./cmd/saga-bench
	@if [ "$(STORE)" = redis ]; then STORES=redis RUNS=1 SCENARIOS=$${SCENARIOS:-lookup,heartbeat,register,watch} \
		cmd/saga-bench/stores.sh $(BIN) bin/saga-bench; exit $$?; fi; \
	dir=$$(mktemp -d); \
	SAGA_LOG_FORMAT=json SAGA_LIMITS_READ_RATE=0 SAGA_LIMITS_WRITE_RATE=0 ./$(BIN) serve --port 0 --data-dir $$dir/data >$$dir/saga.log 2>&1 & pid=$$!; \
	for i in $$(seq 100); do addr=$$(sed -n 's/.*"msg":"serving".*"addr":"\([^"]*\)".*/\1/p' $$dir/saga.log); [ -n "$$addr" ] && break; sleep 0.1; done; \
	[ -n "$$addr" ] || { cat $$dir/saga.log; kill $$pid; exit 1; }; \
	./bin/saga-bench -addr $$addr -c 32 -d 10s -scenario all -ceiling; rc=$$?; \
	kill $$pid; wait $$pid; rm -rf $$dir; exit $$rc

# STORES, SAGAS, RUNS, D, C and SCENARIOS tune it (cmd/saga-bench/stores.sh).
.PHONY: bench-stores
bench-stores: build ## The embedded store and Redis side by side, in rounds, with CPU per request of Saga and Redis
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o bin/saga-bench ./cmd/saga-bench
	cmd/saga-bench/stores.sh $(BIN) bin/saga-bench

# RUNS, D, C and SCENARIOS tune it, e.g. `make bench-security RUNS=5`.
.PHONY: bench-security
bench-security: build ## What auth and TLS cost: lookup and heartbeat against plain, auth and auth+TLS sagas, in rounds
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o bin/saga-bench ./cmd/saga-bench
	cmd/saga-bench/security.sh $(BIN) bin/saga-bench

.PHONY: fuzz
fuzz: ## Fuzz the request decoder and validation for a minute
	$(GO) test -run '^$$' -fuzz FuzzRegister -fuzztime 60s ./pkg/httpapi

##@ Aliases kept from earlier releases

.PHONY: saga-dev saga-build saga-test
saga-dev: run     ## Same as `make run`
saga-build: build ## Same as `make build`
saga-test: test   ## Same as `make test`

.PHONY: clean
clean: ## Remove build output
	rm -rf bin dist

##@ Packaging

# Packages, image and release are built with pinned tools from the separate
# tools/ module (goreleaser, nfpm, cyclonedx-gomod), so they never enter the
# main module's dependencies. `go build tool` compiles them once (goreleaser
# takes minutes the first time, then it is cached).
TOOLS_BIN   := bin/tools
NFPM        := $(TOOLS_BIN)/nfpm
GORELEASER  := $(TOOLS_BIN)/goreleaser
# Every packaged file gets the last commit's time, so packages are reproducible.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
export SOURCE_DATE_EPOCH
# A package version must start with a digit and hold no '-' (RPM): "1.2.0",
# "1.2.0+3.gabc1234", or "0.0.0+git.abc1234.dirty" before the first tag.
PKG_VERSION ?= $(shell echo '$(VERSION)' | sed -E 's/^([0-9][^-]*)-/\1+/; s/^([^0-9])/0.0.0+git.\1/; s/-/./g')
PKG_ARCH    ?= $(shell $(GO) env GOARCH)
PACKAGE_DIR ?= bin/packages
ASSETS_DIR  := bin/assets
IMAGE       ?= saga
# docker when an engine answers, else podman. Podman here runs rootful with
# `--runtime runc --cgroup-manager=cgroupfs`, and needs `default_ulimits = []`
# in /etc/containers/containers.conf where the sandbox forbids raising ulimits
# (`make package-deps` writes that file when it is missing).
CONTAINER_ENGINE ?= $(shell if docker info >/dev/null 2>&1; then echo docker; elif command -v podman >/dev/null; then echo podman; fi)
ENGINE_FLAGS ?= $(if $(filter podman,$(CONTAINER_ENGINE)),--runtime runc --cgroup-manager=cgroupfs)
# Podman writes OCI images by default, which drop HEALTHCHECK; docker's format
# keeps it. No intermediate layers are kept: a scratch image builds in seconds.
IMAGE_BUILD_FLAGS ?= $(if $(filter podman,$(CONTAINER_ENGINE)),--format docker --layers=false)

.PHONY: tools
tools: ## Build the pinned packaging tools into bin/tools
	cd tools && $(GO) build -o ../$(TOOLS_BIN)/ tool
	touch $(TOOLS_BIN)/*

.PHONY: package-deps
package-deps: ## Install what packaging, the repositories and their checks need (lintian, rpmlint, rpm, createrepo-c, podman, …)
	@missing=""; \
	for bin in lintian rpmlint rpm podman runc ruby debootstrap nginx promtool apt-ftparchive createrepo_c gpg; do command -v $$bin >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
		echo "make: installing lintian, rpmlint, rpm, podman, runc, ruby, debootstrap, nginx-light, prometheus (promtool), apt-utils, createrepo-c and gnupg with apt"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lintian rpmlint rpm podman runc uidmap ruby debootstrap nginx-light prometheus apt-utils createrepo-c gnupg >/dev/null; \
		$(SUDO) systemctl disable --now nginx prometheus >/dev/null 2>&1 || true; \
	fi
	@if [ ! -s /etc/containers/containers.conf ]; then \
		printf '[containers]\n# Keep the host limits: the sandbox may not raise them.\ndefault_ulimits = []\n' | $(SUDO) tee /etc/containers/containers.conf >/dev/null; \
	fi

# The end-to-end tests also build, lint and install the packages and the
# image, and the contrib and packaging-definition tests run with them.
e2e: package-deps tools test-packaging

.PHONY: test-packaging
test-packaging: package-deps ## Tests of the contrib examples and of the package definitions (their own modules)
	cd contrib && $(GO) vet ./... && $(GO) test -race -count=1 ./...
	cd tools && $(GO) vet ./... && $(GO) test -race -count=1 ./...

.PHONY: package-assets
package-assets: ## Generate completions, man pages, config.toml and the CA bundle into bin/assets
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $(ASSETS_DIR)/saga ./cmd/saga
	sh packaging/assets.sh $(ASSETS_DIR)/saga $(ASSETS_DIR)

.PHONY: package
package: package-assets $(NFPM) ## Build the .deb and .rpm into bin/packages (PKG_ARCH=amd64|arm64)
	CGO_ENABLED=0 GOOS=linux GOARCH=$(PKG_ARCH) $(GO) build $(GOFLAGS_BUILD) -o bin/pkg/linux-$(PKG_ARCH)/saga ./cmd/saga
	mkdir -p $(PACKAGE_DIR)
	for fmt in deb rpm; do \
		VERSION='$(PKG_VERSION)' GOARCH=$(PKG_ARCH) $(NFPM) package --config nfpm.yaml --packager $$fmt --target $(PACKAGE_DIR)/ || exit 1; \
	done
	@ls -1 $(PACKAGE_DIR)

.PHONY: package-lint
package-lint: package ## lintian and rpmlint on the built packages
	lintian --fail-on error,warning $(PACKAGE_DIR)/saga_$(PKG_VERSION)-1_$(PKG_ARCH).deb
	$(SUDO) sh packaging/rpmlint.sh $(PACKAGE_DIR)/saga-$(PKG_VERSION)-1.*.rpm

# The signed repositories. SIGNING_KEY is a key id or fingerprint in the
# caller's GnuPG home; REPO_URL is where REPO_DIR will be served (it goes
# into the .repo file). The packages come from `make package` for each of
# REPO_ARCHS, or from REPO_PACKAGES (e.g. a release's "dist/*.deb
# dist/*.rpm"). Publishing again adds the new version beside the old ones.
REPO_DIR      ?= dist
REPO_URL      ?= https://packages.sagaproject.org
REPO_ARCHS    ?= amd64 arm64
REPO_PACKAGES ?=

.PHONY: repo
repo: ## Signed APT and RPM repositories in dist/apt and dist/rpm (VERSION=x SIGNING_KEY=<key id>)
	@[ -n "$(SIGNING_KEY)" ] || { echo "make: repo needs SIGNING_KEY=<key id or fingerprint in your GnuPG home>"; exit 1; }
	@for bin in apt-ftparchive createrepo_c rpmsign gpg; do command -v $$bin >/dev/null || { echo "make: $$bin is missing (make package-deps)"; exit 1; }; done
	$(if $(REPO_PACKAGES),,for arch in $(REPO_ARCHS); do $(MAKE) --no-print-directory package PKG_ARCH=$$arch || exit 1; done)
	sh packaging/repo.sh '$(SIGNING_KEY)' $(REPO_DIR) $(REPO_URL) \
		$(or $(REPO_PACKAGES),$(foreach arch,$(REPO_ARCHS),$(PACKAGE_DIR)/saga_$(PKG_VERSION)-1_$(arch).deb) $(PACKAGE_DIR)/saga-$(PKG_VERSION)-1.*.rpm)

# The release image: this machine's build of the binary in a staged context,
# with packaging/image/Dockerfile (no base image pulled). The top-level
# Dockerfile builds the same image from source in the Go image.
.PHONY: image
image: package-assets ## Build the OCI image saga:VERSION from scratch with docker or podman
	@[ -n "$(CONTAINER_ENGINE)" ] || { echo "make: neither a docker engine nor podman is available (make package-deps)"; exit 1; }
	rm -rf bin/image && mkdir -p bin/image/packaging/image bin/image/$(ASSETS_DIR)
	CGO_ENABLED=0 GOOS=linux GOARCH=$(PKG_ARCH) $(GO) build $(GOFLAGS_BUILD) -o bin/image/saga ./cmd/saga
	cp packaging/image/Dockerfile bin/image/
	cp -R packaging/image/. bin/image/packaging/image/
	cp $(ASSETS_DIR)/ca-certificates.crt bin/image/$(ASSETS_DIR)/
	$(CONTAINER_ENGINE) $(ENGINE_FLAGS) build $(IMAGE_BUILD_FLAGS) --platform linux/$(PKG_ARCH) \
		--build-arg VERSION=$(VERSION) --build-arg REVISION=$(COMMIT) --build-arg CREATED=$(DATE) \
		-t $(IMAGE):$(VERSION) -t $(IMAGE):latest bin/image

.PHONY: release-snapshot
release-snapshot: $(GORELEASER) ## A full local release with goreleaser into dist/ (nothing published)
	@[ -n "$(CONTAINER_ENGINE)" ] || { echo "make: neither a docker engine nor podman is available (make package-deps)"; exit 1; }
	@# goreleaser calls `docker`; with podman, a shim on PATH stands in for it.
	rm -rf bin/shim && mkdir -p bin/shim
	$(if $(filter podman,$(CONTAINER_ENGINE)),printf '#!/bin/sh\nif [ "$$1" = build ]; then shift; set -- build $(IMAGE_BUILD_FLAGS) "$$@"; fi\nexec podman $(ENGINE_FLAGS) "$$@"\n' >bin/shim/docker && chmod +x bin/shim/docker)
	$(GORELEASER) check
	@# goreleaser reads the remote's URL; a clone without one gets the project's.
	PATH="$(CURDIR)/bin/shim:$$PATH" $(if $(shell git remote 2>/dev/null),,GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=remote.origin.url GIT_CONFIG_VALUE_0=https://github.com/sagaproject/saga.git) \
		$(GORELEASER) release --snapshot --clean --skip=publish

# Rebuilt when tools/go.mod changes the pins.
$(NFPM) $(GORELEASER): tools/go.mod
	$(MAKE) tools

##@ Service

# The saga that the service targets drive: the one on PATH, else the one
# `make saga-update` installs.
SAGA_CLI     ?= $(shell command -v saga 2>/dev/null || echo /usr/local/bin/saga)
SERVICE_NAME ?= saga

.PHONY: e2e-deps
e2e-deps: ## Install what the end-to-end tests need (debootstrap, systemd-container) when missing
	@missing=""; \
	for bin in debootstrap systemd-nspawn nsenter; do command -v $$bin >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
		echo "make: installing debootstrap and systemd-container with apt (the e2e tests boot Debian under systemd-nspawn)"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap systemd-container >/dev/null; \
	fi

.PHONY: e2e
e2e: e2e-deps build ## End-to-end tests: saga as a service in a booted Debian 12 (needs root; the first run builds the root file system)
	$(SUDO) env "PATH=$$PATH" SAGA_E2E_BINARY=$(CURDIR)/$(BIN) $(GO) test -tags e2e -count=1 -timeout 60m ./test/e2e/...

.PHONY: saga-update
saga-update: build ## Build, install the CLI over the saga on PATH (else /usr/local/bin), and restart the service if it is installed
	$(SUDO) install -m 0755 $(BIN) $(SAGA_CLI)
	@$(SUDO) $(SAGA_CLI) status >/dev/null; rc=$$?; \
	if [ $$rc -eq 4 ]; then echo "make: the service is not installed; nothing to restart"; \
	else $(SUDO) $(SAGA_CLI) restart; fi

.PHONY: saga-service-status
saga-service-status: ## Show the service's state (and systemd's view of it)
	-$(SAGA_CLI) status
	-@if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then systemctl status $(SERVICE_NAME) --no-pager; fi

.PHONY: saga-service-logs
saga-service-logs: ## Follow the service's logs (journald on Linux, ~/.saga/logs or /var/log/saga on macOS)
	@if command -v journalctl >/dev/null; then $(SUDO) journalctl -u $(SERVICE_NAME) -n 100 -f; \
	elif [ -d "$$HOME/.saga/logs" ]; then tail -n 100 -f "$$HOME"/.saga/logs/*.log; \
	else tail -n 100 -f /var/log/saga/*.log; fi

.PHONY: saga-service-restart
saga-service-restart: ## Restart the installed service
	$(SUDO) $(SAGA_CLI) restart
