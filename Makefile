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
	cd vendor && $(CARGO) test --target-dir ../target -p pingora-core --features rustls --lib -- protocols::http
	cd vendor && $(CARGO) test --target-dir ../target -p pingora-proxy --lib
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

## Failure scenarios beside NGINX and HAProxy (issue 8): (a) an origin killed and restarted under
## load, (b) 20 reloads under load, (c) memory per 10,000 idle keep-alive connections.
## SCENARIO=a|b|c runs one; see bench/scenarios/run.sh for SCEN_* settings.
.PHONY: bench-scenarios
bench-scenarios:
	./bench/scenarios/run.sh

## Fuzz every target for FUZZ_SECONDS (default 60) each, bounded; stable toolchain via
## RUSTC_BOOTSTRAP=1 (see fuzz/README.md). FUZZ_TARGETS="a b" picks targets.
FUZZ_SECONDS ?= 60
.PHONY: fuzz
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) ./fuzz/run.sh
