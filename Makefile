# alertpost: the two commands a newcomer needs are `make run` and `make test`.

CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: run run-rabbitmq test lint bench chaos fuzz rabbitmq test-tools build

## run: a receiver and `alertpost run` (ingest and worker on the embedded
## queue, no RabbitMQ) with examples/alertpost.toml, and the sample alerts
## flowing through them.
run: build
	@scripts/run-demo.sh

## run-rabbitmq: the same on RabbitMQ (started, installed if missing): a
## worker, the ingest and `alertpost publish`.
run-rabbitmq: rabbitmq build
	@ALERTPOST_DEMO_BACKEND=rabbitmq scripts/run-demo.sh

## test: the whole suite (format, lints, unit and end-to-end tests against
## the local RabbitMQ, then the chaos suite, which must run alone).
test: rabbitmq test-tools lint
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace
	$(CHAOS)

## chaos: the broker and receiver faults alone (an alarm, a stopped app,
## kill -9, a 3-node cluster...): one test at a time, never beside the
## other suites; each prints delivered / lost / duplicates / seconds.
chaos: rabbitmq
	$(CARGO) build --workspace --bins
	$(CHAOS)

CHAOS = $(CARGO) test -p alertpost-tests --test chaos -- --test-threads=1 --nocapture

## lint: rustfmt and clippy, warnings as errors; the code's shape
## (scripts/shape.py: lines of code per file and crate, the longest
## functions, import circles inside each crate): a circle fails it, sizes
## are reported.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p alertpost-tests --test chaos -- -D warnings
	python3 scripts/shape.py

## bench: alertpost against the minimal consume → POST → ack loop; writes
## BENCHMARKS.md.
bench: rabbitmq
	$(CARGO) build --release --workspace --bins
	$(CARGO) run --release -p alertpost-tests --bin alertpost-bench -- --out BENCHMARKS.md

## fuzz: every cargo-fuzz target (tests/fuzz: normalizers, decoders, the
## template renderer, the matcher parser, the config loader) for
## FUZZ_SECONDS each (default 60), on the nightly toolchain; a crash stops
## it and leaves its input under tests/fuzz/artifacts/.
FUZZ_SECONDS ?= 60
fuzz:
	@scripts/fuzz.sh $(FUZZ_SECONDS)

## rabbitmq: install (Debian) and start RabbitMQ if needed.
rabbitmq:
	@scripts/ensure-rabbitmq.sh

## test-tools: the ecosystem's own programs the tests use (Alertmanager).
test-tools:
	@scripts/ensure-test-tools.sh

build:
	$(CARGO) build --release --workspace --bins
