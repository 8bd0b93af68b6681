# lanes — multi-process HTTP supervisor. `make run` serves the demo site,
# `make test` runs every test.
GO      ?= go
BIN     := bin
CONFIG  ?= configs/example.hcl
TESTFLAGS ?=

.PHONY: all build run test test-deps test-race bench bench-deps check fmt vet clean

all: build

build:
	$(GO) build -o $(BIN)/lanesd ./cmd/lanesd
	$(GO) build -o $(BIN)/lanectl ./cmd/lanectl
	$(GO) build -o $(BIN)/hello-worker ./examples/hello-worker

run: build
	$(BIN)/lanesd -config $(CONFIG)

check: build
	$(BIN)/lanesd -config $(CONFIG) -check

# Every test: unit tests under the race detector (and the few it makes too
# slow, or whose figures it distorts, without), then the process-level
# integration tests (real lanesd, workers of Go and Python, sockets and
# signals).
test: test-deps
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) test -race -count=1 $(TESTFLAGS) $$($(GO) list ./... | grep -v /integration)
	$(GO) test -count=1 $(TESTFLAGS) -run 'TestProxyLargeBody|TestWorkerUploadStreams|TestRSS1000Pages|TestServeAllocs' ./worker/app/ ./fetchd/ ./supervisor/front/  # -race skips them: too slow, or memory and allocation figures it distorts
	$(GO) test -count=1 -timeout 8m $(TESTFLAGS) ./integration/...

# What the tests need beyond Go: Chromium, for the dashboard's test in a
# real headless browser (supervisor/admin/browser_test.go), and Debian's
# app servers for the exec lanes' tests (integration/exec_test.go,
# exec_servers_test.go): gunicorn (python3-gunicorn brings /usr/bin/python3;
# gunicorn, the command), uvicorn, uWSGI with its python3 plugin, node, PHP's
# CLI and puma. Each test skips, saying so, where its program cannot be had. Installed with apt-get when missing and
# possible (root, apt-get), in one call; never fails.
test-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || test -x /usr/bin/chromium || test -n "$$LANES_CHROMIUM" || missing="$$missing chromium"; \
	/usr/bin/python3 -c 'import gunicorn' >/dev/null 2>&1 || missing="$$missing python3-gunicorn"; \
	command -v gunicorn >/dev/null 2>&1 || missing="$$missing gunicorn"; \
	/usr/bin/python3 -c 'import uvicorn' >/dev/null 2>&1 || missing="$$missing python3-uvicorn"; \
	command -v uwsgi >/dev/null 2>&1 || missing="$$missing uwsgi-core"; \
	test -e /usr/lib/uwsgi/plugins/python3_plugin.so || missing="$$missing uwsgi-plugin-python3"; \
	command -v node >/dev/null 2>&1 || missing="$$missing nodejs"; \
	command -v php >/dev/null 2>&1 || missing="$$missing php-cli"; \
	command -v puma >/dev/null 2>&1 || missing="$$missing puma"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
		echo "test-deps: not installing$$missing (needs root and apt-get); the tests that need it will skip"; exit 0; \
	fi; \
	echo "test-deps: apt-get install$$missing"; \
	{ apt-get install -y -q --no-install-recommends$$missing || { apt-get update -q && apt-get install -y -q --no-install-recommends$$missing; }; } >/dev/null 2>&1 \
		|| echo "test-deps: apt-get failed; the tests that need$$missing will skip"; \
	exit 0

# The bench prints every figure side by side in one run; see bench/main.go.
bench: build bench-deps
	$(GO) run ./bench -lanesd $(BIN)/lanesd

# What the bench compares with: nginx and HAProxy (the reverse-proxy
# baselines) and wrk (the closed-loop load generator); and strace, which counts system calls for
# the per-request breakdown; and gunicorn for /usr/bin/python3, which the
# Python scenarios (pyisolation, pyhang, pythroughput) run. Installed with
# apt-get when missing and possible (root, apt-get); never fails: without
# them the bench uses its Go generator, prints no nginx or HAProxy figures, skips
# the Python scenarios. Note that installing nginx on a
# host with systemd also enables its default site on port 80.
bench-deps:
	@missing=""; \
	command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || missing="$$missing nginx-light"; \
	command -v haproxy >/dev/null 2>&1 || test -x /usr/sbin/haproxy || missing="$$missing haproxy"; \
	command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	command -v strace >/dev/null 2>&1 || missing="$$missing strace"; \
	/usr/bin/python3 -c 'import gunicorn' >/dev/null 2>&1 || missing="$$missing python3-gunicorn"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
		echo "bench-deps: not installing$$missing (needs root and apt-get); the bench runs without them"; exit 0; \
	fi; \
	echo "bench-deps: apt-get install$$missing"; \
	{ apt-get install -y -q$$missing || { apt-get update -q && apt-get install -y -q$$missing; }; } >/dev/null 2>&1 \
		|| echo "bench-deps: apt-get failed; the bench runs without$$missing"; \
	exit 0

fmt:
	gofmt -w .

vet:
	$(GO) vet ./...

clean:
	rm -rf $(BIN)
