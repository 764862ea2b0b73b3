# meterstream: `make demo` runs the whole pipeline locally; `make test` runs every test.
SHELL := /bin/bash
PY := .venv/bin/python
export STRIPE_MOCK_BIN := $(CURDIR)/.cache/bin/stripe-mock
PYTEST := $(PY) -m pytest -p no:cacheprovider --durations=12

.PHONY: bootstrap demo test test-unit test-integration chaos lint typecheck bench bench-quick clean

bootstrap:  ## install everything (idempotent)
	@scripts/bootstrap.sh

demo: bootstrap  ## local Kafka, worker, sink, fake Stripe (Stripe test mode if STRIPE_API_KEY is set; ENGINE=metronome: the fake Metronome), demo load
	$(PY) -m streams demo --duration $${DURATION:-60} --engine $${ENGINE:-stripe}

test: bootstrap lint typecheck  ## the full suite: unit tier, then integration tier (real Kafka) with the quick chaos scenarios
	$(PYTEST) -q -m "not integration" tests
	$(PYTEST) -q -m "integration and (not chaos or quick)" tests

test-unit: bootstrap  ## fast tier: no broker
	$(PYTEST) -q -m "not integration" tests

test-integration: bootstrap  ## needs a broker: started from the project's jars unless KAFKA_BOOTSTRAP_SERVERS is set
	$(PYTEST) -q -m "integration and (not chaos or quick)" tests

chaos: bootstrap  ## every chaos scenario (docs/reliability.md; about 25 min); METERSTREAM_CHAOS_REPORT=rows.jsonl keeps the table rows
	$(PYTEST) -q -s -m chaos tests/chaos

bench:  ## every benchmark at the issue's sizes (long); results in benchmarks/results/full
	@METERSTREAM_EXTRAS=dev,bench scripts/bootstrap.sh
	$(PY) -m benchmarks full --profile --out benchmarks/results/full
	$(PY) benchmarks/producer_bench.py
	$(PY) benchmarks/sink_bench.py

bench-quick:  ## drain, latency and scale against baselines in under 5 minutes
	@METERSTREAM_EXTRAS=dev,bench scripts/bootstrap.sh
	$(PY) -m benchmarks quick --profile --out benchmarks/results/quick

lint: bootstrap
	.venv/bin/ruff check .

typecheck: bootstrap
	.venv/bin/mypy

clean:
	rm -rf .venv .cache deploy/kafka-local/lib deploy/kafka-local/run .mypy_cache .ruff_cache
