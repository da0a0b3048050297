# Ficus — the two commands a new user needs are `make run` and `make test`.
GO      ?= go
BIN     := bin/ficus
PKGS    := ./...
export CGO_ENABLED := 1
# Builds and tests use Go 1.27.3: the standard library of the machine's Go 1.26.8 has
# vulnerabilities that ficus calls (net/http, crypto/tls, crypto/x509: govulncheck in make lint
# lists them), fixed in later releases. The go command fetches that toolchain through the Go
# module proxy the first time (about 76 MB). GOTOOLCHAIN=local make … uses the Go on PATH.
export GOTOOLCHAIN ?= go1.27.3

.PHONY: all build run test test-postgres test-short test-saga-long chaos lint compare bench fuzz clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/ficus

## run: build, seed demo data, start every component (bus, monolith, services, facade), print
## the URLs, the admin token and the dashboard's address.
run: build
	./$(BIN) up -c config.yaml

## test: the full suite with the race detector (what .ci/run calls).
test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

## test-postgres: the storage suites (store, outbox, inbox, idempotency, shop, services, ficus up) on
## PostgreSQL too, on a throwaway server that .ci/postgres starts (installing Debian's
## postgresql package when it is missing) and removes afterwards.
PG_PKGS := ./platform/store/... ./platform/outbox/... ./platform/inbox/... ./platform/idempotency/... ./monolith/... ./extracted/... ./cmd/ficus/...
test-postgres:
	FICUS_REQUIRE_POSTGRES=1 .ci/postgres run $(GO) test -race -count=1 -timeout 20m $(PG_PKGS)

test-short:
	$(GO) test -count=1 $(PKGS)

## test-saga-long: the order saga's long forms — 10,000 orders while the monolith is killed
## with SIGKILL at random (make test runs 1,000), and 2,000 property checks instead of 40.
test-saga-long:
	FICUS_SAGA_E2E_ORDERS=10000 $(GO) test -count=1 -timeout 30m -run 'TestKillTheMonolithMidSaga' -v ./cmd/ficus/
	$(GO) test -count=1 -timeout 30m -run 'TestSagaProperties' ./monolith/orders/ -rapid.checks=2000

## chaos: the chaos suite's long form (make test runs one short round on the embedded bus and
## on Kafka): the shop in remote mode under a steady order load through the facade while each
## component is killed with SIGKILL and started again in turn (facade, monolith, inventory,
## payments, the bus) and config.yaml is corrupted under the facade; then every accepted order
## must be terminal, stock and money reconcile, no event lost or duplicated, ficus migrate
## verify clean. Runs on a 3-node NATS cluster (each node killed in turn), then on a 3-broker
## kfake Kafka cluster in the test process (no broker can be killed there: the events topic's
## leader moves to each broker in turn and the whole cluster is stopped and restarted; the
## topic may hold copies of an event, counted, each applied once). On SQLite and on PostgreSQL
## (a throwaway server from .ci/postgres unless FICUS_TEST_POSTGRES names one). Prints a
## report per phase.
CHAOS_ROUNDS ?= 3
CHAOS_PHASE  ?= 8s
chaos:
	FICUS_CHAOS_ROUNDS=$(CHAOS_ROUNDS) FICUS_CHAOS_PHASE=$(CHAOS_PHASE) FICUS_CHAOS_BUS=nats-cluster,kafka FICUS_REQUIRE_POSTGRES=1 \
	  $(if $(FICUS_TEST_POSTGRES),,.ci/postgres run) $(GO) test -count=1 -timeout 90m -run '^TestChaos$$' -v ./cmd/ficus/

## lint: go vet, staticcheck and govulncheck. govulncheck runs offline against a database
## built from the golang.org/x/vulndb module (through the module proxy; once per version, under
## bin/vulndb) and fails when the code calls a vulnerable symbol that .ci/vulncheck-ignore does
## not excuse with a reason (tools/vulncheck; README.md).
lint:
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)
	$(GO) run ./tools/vulncheck -go $(GO) $(PKGS)

## compare: each extracted service against the monolith module it replaces, side by side on
## fresh databases (ficus compare; docs/compare.md): a report per endpoint, exit 1 on any
## unexpected difference. COMPARE_JSON=FILE also writes the reports as JSON.
COMPARE_JSON ?=
compare: build
	./$(BIN) compare $(if $(COMPARE_JSON),-json '$(COMPARE_JSON)')

## bench: every benchmark in ONE table (ficus bench report; docs/bench.md), each figure with
## its baseline measured in the same run and the ratio: the facade against the stock Go
## reverse proxy and nginx; orders over HTTP against in process, and remote mode (the saga)
## against local, on SQLite, and on PostgreSQL when FICUS_TEST_POSTGRES names a server
## (BENCH_POSTGRES=1: a throwaway one from .ci/postgres; else the row says "skipped: no
## server"); events end to end against the pipeline's drain rate, a row per bus in BENCH_BUSES;
## ficus migrate's backfill and verify against the monolith's own read; shadowing on against
## off. The whole run replaces docs/bench.md's bench:begin/bench:end section with the table
## and the machine it ran on. BENCH_ONLY=facade,shadow (any of facade, orders, events,
## backfill, shadow) runs some rows and leaves docs/bench.md alone. About 5 minutes on 2
## cores. nginx and wrk are Debian packages (apt-get install nginx-light wrk): without nginx
## its rows say "nginx: not installed"; without wrk the load comes from vegeta in process.
BENCH_ONLY     ?=
BENCH_BUSES    ?= nats,kafka
BENCH_POSTGRES ?=
bench: build
	$(if $(BENCH_POSTGRES),.ci/postgres run) ./$(BIN) bench report -buses '$(BENCH_BUSES)' \
	  $(if $(BENCH_ONLY),-only '$(BENCH_ONLY)',-doc docs/bench.md)

## fuzz: every fuzz target in the module (found by go test -list), FUZZTIME each. make test
## runs each target briefly, over its f.Add seeds and its corpus committed under
## testdata/fuzz: the config loader (FuzzParse, FuzzParseByteSize), the route matcher
## (FuzzMatch), canary buckets (FuzzBucket), the JSON diff (FuzzCompareJSON), the strict request
## decoder (FuzzDecode), the saga state machine (FuzzSagaTransitions) and the event envelope
## decoder (FuzzUnmarshalEvent). FUZZMINIMIZE bounds the minimising of each new input (Go's
## default, 60s, can take a whole FUZZTIME). A failing input is written under testdata/fuzz:
## commit it with its fix.
FUZZTIME     ?= 30s
FUZZMINIMIZE ?= 5s
fuzz:
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
	  for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$target"; \
	    $(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) $$pkg; \
	  done; \
	done

clean:
	rm -rf bin data
