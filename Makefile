# Sundial — the two commands that set up a fresh machine:
#   make run    install what is needed, build, and run Sundial locally (private NATS + Postgres)
#   make test   install what is needed, build, and run the full test suite
SWIFT ?= swift

.PHONY: setup build run test check-deploy test-unit test-integration bench proto clean

setup:
	@scripts/setup.sh

build: setup
	$(SWIFT) build

run: build
	.build/debug/sundial dev

# The full suite: unit, schedule, and integration tests against real nats-server and
# Postgres started by the test harness. The planner and governor crash tests run the built
# executables, so everything is built first. Swift Testing would start every test at once; on a
# 2-core machine a dozen integration systems at a time make the timing-sensitive ones (fire
# accuracy, nak delays) late, so at most $(TEST_WIDTH) tests run at a time. The fairness suite
# floods a system with thousands of timers on purpose, the breaker and Postgres-outage suites
# run outages of tens of seconds and judge how fast the backlog drains, and the metrics suite
# runs a whole `sundial serve` process; each runs on its own after the rest.
TEST_WIDTH ?= 2
ALONE = FairnessIntegrationTests|BreakerIntegrationTests|PostgresOutageIntegrationTests|MetricsIntegrationTests
test: setup check-deploy
	$(SWIFT) build --build-tests
	SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH=$(TEST_WIDTH) $(SWIFT) test --skip-build --skip "$(ALONE)"
	$(SWIFT) test --skip-build --filter FairnessIntegrationTests
	$(SWIFT) test --skip-build --filter BreakerIntegrationTests
	$(SWIFT) test --skip-build --filter PostgresOutageIntegrationTests
	$(SWIFT) test --skip-build --filter MetricsIntegrationTests

# Offline checks of deploy/: the alert rules parse and their unit tests pass (promtool from
# scripts/setup.sh); the Kubernetes manifests validate against the Kubernetes schemas and
# ours for the custom resources, and agree with the code (scripts/check-k8s.py).
check-deploy: setup
	.tools/promtool check rules deploy/prometheus/sundial-alerts.yml
	cd deploy/prometheus && ../../.tools/promtool test rules sundial-alerts.test.yml
	.venv/bin/python scripts/check-k8s.py

test-unit: setup
	$(SWIFT) test --skip "Integration"

test-integration: setup
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --filter "Integration"

# Benchmarks against a running `make run` (see README).
bench: build
	.build/debug/sundial bench spine

proto:
	scripts/gen-proto.sh

clean:
	rm -rf .build .sundial
