# lanes — multi-process HTTP supervisor. `make run` serves the demo site,
# `make test` runs every test.
GO      ?= go
BIN     := bin
CONFIG  ?= configs/example.hcl
TESTFLAGS ?=

.PHONY: all build run test test-race bench check fmt vet clean

all: build

build:
	$(GO) build -o $(BIN)/lanesd ./cmd/lanesd
	$(GO) build -o $(BIN)/lanectl ./cmd/lanectl
	$(GO) build -o $(BIN)/hello-worker ./examples/hello-worker

run: build
	$(BIN)/lanesd -config $(CONFIG)

check: build
	$(BIN)/lanesd -config $(CONFIG) -check

# Every test: unit tests under the race detector, then the process-level
# integration tests (real lanesd, workers, sockets and signals).
test:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) test -race -count=1 $(TESTFLAGS) $$($(GO) list ./... | grep -v /integration)
	$(GO) test -count=1 -timeout 8m $(TESTFLAGS) ./integration/...

bench: build
	$(GO) run ./bench -lanesd $(BIN)/lanesd

fmt:
	gofmt -w .

vet:
	$(GO) vet ./...

clean:
	rm -rf $(BIN)
