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
GOLANGCI_LINT_VERSION := v2.15.0

# Root, or sudo when there is one: for installing test dependencies with apt.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

##@ Development

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z0-9_-]+:.*##/ {printf "  \033[36m%-22s\033[0m %s\n", $$1, $$2} /^##@/ {printf "\n%s\n", substr($$0, 5)}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/saga, stamped with version, commit and date
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $(BIN) ./cmd/saga

.PHONY: run
run: build ## Run Saga in the foreground on 127.0.0.1:8030 (embedded store)
	./$(BIN) serve

.PHONY: test
test: test-deps ## Run every test under the race detector (installs redis-server when missing)
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 30m ./...

.PHONY: test-deps
test-deps: ## Install what the tests need (redis-server, redis-sentinel, redis-tools) when missing
	@missing=""; \
	for bin in redis-server redis-sentinel redis-cli; do command -v $$bin >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
		echo "make: installing redis-server, redis-sentinel and redis-tools with apt (the tests run real Redis)"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-sentinel redis-tools >/dev/null; \
		$(SUDO) systemctl disable --now redis-server redis-sentinel >/dev/null 2>&1 || true; \
	fi

.PHONY: lint
lint: ## gofmt, go vet and the pinned golangci-lint
	@out=$$(gofmt -l cmd pkg test 2>/dev/null); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION) run ./...

.PHONY: bench
bench: ## Go benchmarks of the hot paths (lookup, heartbeat, register)
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/...

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
