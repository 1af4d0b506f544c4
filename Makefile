# Switchyard — common tasks. `make run` and `make test` work on a fresh Debian machine.
CARGO ?= cargo

.PHONY: deps build run test lint fmt doc bench clean

deps:
	./scripts/ensure-build-deps.sh
	./scripts/ensure-fleet-deps.sh

build: deps
	$(CARGO) build --workspace --all-targets

## Run the gateway on conf/demo.toml with two demo origins.
run: deps
	$(CARGO) build -p switchyard -p demo-origin
	./scripts/run-demo.sh

## Every test: unit, doc and black-box (the real binary over loopback sockets).
test: build
	$(CARGO) test --workspace --all-targets --no-fail-fast
	$(CARGO) test --workspace --doc

## The vendored Pingora crates' own unit tests (network-free modules; see vendor/PATCHES.md), and a
## check that vendor/ is exactly the release plus vendor/patches/.
.PHONY: test-vendor
test-vendor: deps
	cd vendor && $(CARGO) test --target-dir ../target -p pingora-core --features rustls --lib -- protocols::http services::listening protocols::l4::buffered connectors::reuse_check_tests connectors::pool_reaper
	cd vendor && $(CARGO) test --target-dir ../target -p pingora-proxy --lib
	cd vendor && $(CARGO) test --target-dir ../target -p pingora-http --lib
	cd vendor && $(CARGO) test --target-dir ../target -p pingora-timeout --lib
	cd vendor && $(CARGO) test --target-dir ../target -p pingora-pool --lib
	./vendor/reapply.sh 0.9.1 --verify

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

doc: deps
	$(CARGO) doc --workspace --no-deps

clean:
	$(CARGO) clean

## A profile-guided release build: target/release/switchyard-pgo (an instrumented build trained
## on a bounded loopback load, then rebuilt with the profile; see scripts/pgo-build.sh and
## docs/operations.md). About twice a release build.
.PHONY: release-pgo
release-pgo: deps
	./scripts/pgo-build.sh

## Load benchmark: Switchyard beside NGINX, HAProxy and a bare Pingora balancer, in one run
## (3 interleaved rounds of 10 s per scenario; see bench/run.sh for BENCH_* settings).
.PHONY: bench bench-quick
bench:
	./bench/run.sh

## Smoke test of the load benchmark: 1 round of 3 s.
bench-quick:
	BENCH_SECONDS=3 BENCH_ROUNDS=1 ./bench/run.sh

## User-space instructions per proxied request under valgrind's callgrind, for Switchyard, bare
## Pingora, NGINX and HAProxy: repeatable on a noisy machine (see bench/callgrind.sh for CG_*).
## gRPC unary calls through Switchyard beside direct calls, and calls per proxy CPU-second.
.PHONY: bench-grpc
bench-grpc:
	./bench/grpc.sh

## The cost of the JSON access log and of [tracing] at sample_ratio 1.0, as ratios of requests per
## proxy CPU-second to Switchyard without them (needs a release build; see bench/observability.sh).
.PHONY: bench-observability
bench-observability:
	./bench/observability.sh

.PHONY: bench-instructions
bench-instructions:
	./bench/callgrind.sh

## System calls by name, context switches and kernel CPU per proxied request, beside bare Pingora
## (patched and 0.9.1 unpatched), NGINX and HAProxy (perf trace; see bench/syscalls.sh for SC_*).
.PHONY: bench-syscalls
bench-syscalls:
	./bench/syscalls.sh

## Heap allocations per proxied request and the code that makes them (calls into the allocator
## counted under callgrind with their callers; see bench/allocations.sh for AL_*).
.PHONY: bench-allocations
bench-allocations:
	./bench/allocations.sh

## Failure scenarios beside NGINX and HAProxy (issue 8): (a) an origin killed and restarted under
## load, (b) 20 reloads under load, (c) memory per 10,000 idle keep-alive connections, (d) overload:
## one of three origins 10x slower (issue 20). SCENARIO=a|b|c|d runs one; see
## bench/scenarios/run.sh for SCEN_* settings.
.PHONY: bench-scenarios
bench-scenarios:
	./bench/scenarios/run.sh

## Fuzz every target for FUZZ_SECONDS (default 60) each, bounded; stable toolchain via
## RUSTC_BOOTSTRAP=1 (see fuzz/README.md). FUZZ_TARGETS="a b" picks targets.
FUZZ_SECONDS ?= 60
.PHONY: fuzz
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) ./fuzz/run.sh

## Release artifacts in dist/: switchyard-<version>-<arch>-linux.tar.gz (binary, systemd unit and
## its helper, example config, docs, dashboards, licence) and the .deb (cargo-deb; installed if
## missing). The binary is the profile-guided build (scripts/pgo-build.sh: about twice a release
## build), no slower than the plain one on GETs, gRPC, the TCP proxy and active checks
## (docs/benchmarks.md, "Session 14"); DIST_PGO=0 ships the plain release build instead. Either
## is staged as target/dist/release/switchyard: cargo-deb reads its asset target/release/switchyard
## from $CARGO_TARGET_DIR/release. The binary's switchyard_build_info carries the git commit.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
ARCH := $(shell uname -m)
DIST_NAME := switchyard-$(VERSION)-$(ARCH)-linux
DIST_PGO ?= 1
DIST_TARGET_DIR := $(CURDIR)/target/dist
DIST_COMMIT = SWITCHYARD_COMMIT="$$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
.PHONY: dist
dist: deps
	rm -rf $(DIST_TARGET_DIR) && mkdir -p $(DIST_TARGET_DIR)/release
ifeq ($(DIST_PGO),0)
	$(DIST_COMMIT) $(CARGO) build --release --locked -p switchyard --bin switchyard
	cp target/release/switchyard $(DIST_TARGET_DIR)/release/switchyard
else
	$(DIST_COMMIT) PGO_CARGO_FLAGS=--locked PGO_OUT=$(DIST_TARGET_DIR)/release/switchyard \
		./scripts/pgo-build.sh
endif
	command -v cargo-deb >/dev/null 2>&1 || $(CARGO) install cargo-deb --locked
	rm -rf dist/$(DIST_NAME) && mkdir -p dist/$(DIST_NAME)/docs dist/$(DIST_NAME)/contrib
	cp $(DIST_TARGET_DIR)/release/switchyard dist/$(DIST_NAME)/
	cp LICENSE README.md dist/$(DIST_NAME)/
	cp conf/switchyard.toml dist/$(DIST_NAME)/switchyard.toml
	cp docs/*.md dist/$(DIST_NAME)/docs/
	cp -r contrib/systemd contrib/grafana contrib/prometheus dist/$(DIST_NAME)/contrib/
	tar -C dist -czf dist/$(DIST_NAME).tar.gz $(DIST_NAME)
	rm -rf dist/$(DIST_NAME)
	CARGO_TARGET_DIR=$(DIST_TARGET_DIR) $(CARGO) deb -p switchyard --no-build --output dist/
	@ls -l dist/
