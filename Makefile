# CitySense — build, run, test.
#   make run     start a collector and an agent with simulated stations (Ctrl-C stops both)
#   make test    unit and integration tests (go test -race)
#   make e2e     end-to-end tests against real peers (built binaries, real brokers)
#   make lint    gofmt, go vet, staticcheck
#   make cross   static agent builds for the edge architectures, with SHA256SUMS
#   make bench   Go benchmarks, then the store, MQTT, agent and cluster benches
#   make fuzz    every fuzz target, FUZZTIME (20s) each

SHELL        := /bin/bash
GO           ?= go
BIN          ?= bin
DIST         ?= dist
VERSION      ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT       ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
# The commit time, not the wall clock, so that two builds of one commit are identical.
DATE         ?= $(shell git log -1 --format=%cI 2>/dev/null || echo unknown)
PKG          := github.com/citysense/citysense
LDFLAGS      := -s -w -X $(PKG)/internal/cli.version=$(VERSION) -X $(PKG)/internal/cli.commit=$(COMMIT) -X $(PKG)/internal/cli.date=$(DATE)
STATICCHECK  ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOBIN        := $(shell $(GO) env GOPATH)/bin

PORTAL_WEB    := collector/internal/portal/web
PORTAL_VENDOR := collector/internal/portal/static/vendor
PORTAL_STAMP  := $(PORTAL_VENDOR)/.lock

AGENT_PLATFORMS     := linux/amd64 linux/arm64 linux/arm/6 linux/arm/7 linux/riscv64 linux/mipsle
COLLECTOR_PLATFORMS := linux/amd64 linux/arm64

.PHONY: all build run test e2e lint cross bench fuzz clean help

all: build

help:
	@sed -n 's/^#   //p' Makefile

build: $(PORTAL_STAMP)
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/citysense-agent ./agent/cmd/citysense-agent
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/citysense-collector ./collector/cmd/citysense-collector

run: build
	@BIN=$(BIN) bash configs/demo/run.sh

# test/ holds the end-to-end and peer benchmark suites; they run under `make e2e`.
test: $(PORTAL_STAMP)
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v '/test/e2e')

e2e: build
	CITYSENSE_BIN=$(abspath $(BIN)) $(GO) test -count=1 -timeout 15m -v ./test/e2e/...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@test -x $(GOBIN)/staticcheck || GOFLAGS= $(GO) install $(STATICCHECK)
	$(GOBIN)/staticcheck ./...

cross: $(PORTAL_STAMP)
	@rm -rf $(DIST) && mkdir -p $(DIST)
	@set -e; for p in $(AGENT_PLATFORMS); do \
	  os=$${p%%/*}; rest=$${p#*/}; arch=$${rest%%/*}; arm=; suffix=$$arch; \
	  if [ "$$arch" = arm ]; then arm=$${rest#*/}; suffix=armv$$arm; fi; \
	  echo "agent     $$os/$$suffix"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch GOARM=$$arm GOMIPS=softfloat \
	    $(GO) build -trimpath -buildvcs=false -ldflags '$(LDFLAGS)' -o $(DIST)/citysense-agent-$$os-$$suffix ./agent/cmd/citysense-agent; \
	done
	@set -e; for p in $(COLLECTOR_PLATFORMS); do \
	  os=$${p%%/*}; arch=$${p#*/}; echo "collector $$os/$$arch"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch \
	    $(GO) build -trimpath -buildvcs=false -ldflags '$(LDFLAGS)' -o $(DIST)/citysense-collector-$$os-$$arch ./collector/cmd/citysense-collector; \
	done
	@cd $(DIST) && sha256sum citysense-* > SHA256SUMS && ls -l citysense-* | awk '{printf "%-40s %6.2f MiB %10d bytes\n", $$9, $$5/1048576, $$5}'

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./...
	$(GO) run ./test/bench $(BENCHFLAGS)
	$(GO) run ./test/bench/agent $(AGENTBENCHFLAGS)
	$(GO) run ./test/bench/mqtt $(if $(TELEGRAF),-telegraf $(TELEGRAF)) $(MQTTBENCHFLAGS)
	$(GO) run ./test/bench/cluster $(CLUSTERBENCHFLAGS)

# Every fuzz target of the repository, FUZZTIME each (go test -fuzz takes
# one target at a time).
FUZZTIME ?= 20s
fuzz:
	@set -e; for dir in $$(git grep -l '^func Fuzz' -- '*_test.go' | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -h '^func Fuzz' $$dir/*_test.go | sed 's/^func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    echo "== ./$$dir $$f"; $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) ./$$dir; \
	  done; \
	done

clean:
	rm -rf $(BIN) $(DIST) data

# ---- packages (issue 9): make deb [DEB_ARCHES="amd64 arm64 armhf"] [DEB_VERSION=1.2.3]
# Debian packages of both programs, built with deploy/deb/build.sh (dpkg-deb)
# into $(DIST)/deb. The version is the last v* tag, or 0.0.0~git<commit time>.
DEB_ARCHES   ?= amd64 arm64 armhf
DEB_VERSION  ?= $(shell v=$$(git describe --tags --match 'v[0-9]*' 2>/dev/null | sed 's/^v//; s/-/+/g'); \
                  [ -n "$$v" ] && echo "$$v" || echo "0.0.0~git$$(git log -1 --format=%cd --date=format:%Y%m%d%H%M%S 2>/dev/null).$(COMMIT)")
DEB_EPOCH    ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
DEB_LDFLAGS  := -s -w -X $(PKG)/internal/cli.version=$(DEB_VERSION) -X $(PKG)/internal/cli.commit=$(COMMIT) -X $(PKG)/internal/cli.date=$(DATE)

.PHONY: deb
deb: $(PORTAL_STAMP)
	@set -e; for a in $(DEB_ARCHES); do \
	  case $$a in amd64) goarch=amd64; goarm=;; arm64) goarch=arm64; goarm=;; armhf) goarch=arm; goarm=7;; \
	    *) echo "deb: architecture $$a: want amd64, arm64 or armhf" >&2; exit 2;; esac; \
	  for prog in agent collector; do \
	    bin=$(DIST)/deb/bin/$$a/citysense-$$prog; \
	    CGO_ENABLED=0 GOOS=linux GOARCH=$$goarch GOARM=$$goarm $(GO) build -trimpath -buildvcs=false \
	      -ldflags '$(DEB_LDFLAGS)' -o $$bin ./$$prog/cmd/citysense-$$prog; \
	    SOURCE_DATE_EPOCH=$(DEB_EPOCH) deploy/deb/build.sh $$prog $$a '$(DEB_VERSION)' $$bin $(DIST)/deb; \
	  done; \
	done

# ---- portal (issue 7): make portal
# The data portal's front-end packages (Leaflet, leaflet.markercluster, uPlot)
# are installed with npm from collector/internal/portal/web/package-lock.json and
# their dist files copied into collector/internal/portal/static/vendor, which the
# collector embeds. They are dependencies, not part of the repository: vendor/ is
# not committed, and build, test and e2e make it first (once per lock file).
# axe-core (a dev dependency) stays in node_modules for the browser tests.

$(PORTAL_STAMP): $(PORTAL_WEB)/package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed for the portal's libraries (Debian: apt-get install npm)"; exit 1; }
	$(MAKE) portal

.PHONY: portal
portal:
	cd $(PORTAL_WEB) && npm ci --no-audit --no-fund
	sh $(PORTAL_WEB)/vendor.sh $(PORTAL_WEB)/node_modules $(PORTAL_VENDOR)
	@ls -l $(PORTAL_VENDOR) | awk 'NR>1 {printf "  %-32s %8d bytes\n", $$9, $$5}'
	@cp $(PORTAL_WEB)/package-lock.json $(PORTAL_STAMP)
