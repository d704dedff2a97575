# The project's public interface. `make run` and `make test` set everything up themselves.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
# Some machines set PYTHONDONTWRITEBYTECODE: then every process compiles every module it imports, each time (1.9 of
# a worker's 3.5-4.7 CPU-s start-up, measured). The project's processes cache bytecode, as the image does (it compiles
# at build time); __pycache__ is ignored by git.
unexport PYTHONDONTWRITEBYTECODE
PY := .venv/bin/python

.PHONY: bootstrap run test lint demo package-lambdas

bootstrap:
	@bin/bootstrap

## run: the local stack (moto SQS, queues, migrations, api, worker, beat); Ctrl-C stops it all
## (RUN_STARTED_AT: so its first line says how long the install took)
run:
	@echo "run: install (bin/bootstrap: uv, uv sync into .venv) ..."
	@export RUN_STARTED_AT=$$(date +%s.%N) && bin/bootstrap && $(PY) -m devstack.run

## test: lint, then every test (unit, infra, integration: real processes) on TEST_WORKERS parallel pytest workers
## (default 6: integration tests mostly wait on queues and timeouts), with every benchmark at smoke size beside them
## (BENCH_BESIDE=0: after them; smoke figures mean nothing, so they run at a lower priority and take the CPU the
## tests leave). One worker runs the node tools' tests (npm, CDK synth, osls) and two the `serial` tests (soak,
## database outage, fencing pauses, browser), each group one test after another (tests/conftest.py). Fails if the
## tests or the smoke benchmarks fail; the smoke benchmarks' output is in test-artifacts/bench-smoke.log.
TEST_WORKERS ?= 6
BENCH_BESIDE ?= 1
test: bootstrap lint
	@mkdir -p test-artifacts
	@set -o pipefail; \
	if [ "$(BENCH_BESIDE)" = 1 ]; then \
	  BENCH_SMOKE=1 nice -n 10 $(PY) -m bench > test-artifacts/bench-smoke.log 2>&1 & bench=$$!; \
	  trap 'kill $$bench 2>/dev/null' INT TERM; \
	fi; \
	$(PY) -m pytest -n $(TEST_WORKERS); tests=$$?; \
	if [ "$(BENCH_BESIDE)" = 1 ]; then \
	  wait $$bench; smoke=$$?; \
	else \
	  BENCH_SMOKE=1 $(PY) -m bench > test-artifacts/bench-smoke.log 2>&1; smoke=$$?; \
	fi; \
	tail -n 40 test-artifacts/bench-smoke.log; echo "bench-smoke: exit $$smoke"; \
	exit $$(( tests || smoke ))

lint: bootstrap
	.venv/bin/ruff check .

## demo: with `make run` going, post jobs and watch one fail into the DLQ
demo: bootstrap
	$(PY) -m devstack.demo

## package-lambdas: package the DLQ Lambdas offline (osls, serverless.yml) into .serverless/ and cfn-lint it
package-lambdas: bootstrap
	bin/package-lambdas

.PHONY: invoke-replay invoke-alert

## invoke-replay: with `make run` going, run the dlqReplay Lambda locally (osls invoke local); REPLAY_EVENT='{"queue": "default"}'
invoke-replay: bootstrap
	bin/invoke-lambda replay $(if $(REPLAY_EVENT),'$(REPLAY_EVENT)')

## invoke-alert: with `make run` going, run the dlqAlert Lambda locally (osls invoke local) on every DLQ
invoke-alert: bootstrap
	bin/invoke-lambda alert $(if $(ALERT_EVENT),'$(ALERT_EVENT)')

.PHONY: synth lint-infra

## synth: synthesize the CDK app (infra/) offline into cdk.out/ (INFRA_STAGE, default dev)
synth: bootstrap
	bin/synth

## lint-infra: cfn-lint the synthesized template, hadolint the Dockerfile
lint-infra: synth
	bin/lint-infra

.PHONY: soak

## soak: SOAK_TASKS (2000) idempotent tasks, two workers SIGKILLed, paused and cut off from SQS at random; fails on any lost or duplicate effect
soak: bootstrap
	$(PY) -m devstack.soak

.PHONY: bench bench-smoke

## bench: every benchmark at full size, one after the other, the round-trip ones at 0 ms and at BENCH_LATENCY_MS (15)
## added per request; prints the latencies side by side, writes bench/results/*.json (*.latency-15ms.json)
bench: bootstrap
	$(PY) -m bench $(BENCH)

## bench-smoke: every benchmark at a tiny size, side by side, to prove they run (part of `make test`); figures mean nothing;
## the round-trip ones through the latency proxy only (BENCH_LATENCY_MS)
bench-smoke: bootstrap
	BENCH_SMOKE=1 $(PY) -m bench $(BENCH)
