# wxpush — the documented entry points. `make help` lists them.

GO        ?= go
BIN       := bin
PKG       := github.com/wxpush/wxpush
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X $(PKG)/internal/version.Version=$(VERSION)
# Every main package under */cmd/*: bin/<name> for each one that exists.
CMDS      := $(sort $(dir $(wildcard */cmd/*/main.go)))
FUZZTIME  ?= 10s
BENCHN    ?= 40000

export CGO_ENABLED ?= 0

# Every file that can go into a binary (Go sources, and what they embed:
# scenario catalog, report and console templates and assets), tests and
# build output aside: bin/wxload is rebuilt only when one of them changed,
# so `make demo` compiles once and then reuses the binary.
GO_SOURCES := $(shell find . \( -path ./.git -o -path ./bin -o -path ./runs -o -path ./reports/out -o -name testdata \) -prune -o -type f -not -name '*_test.go' -not -name '*.md' -print 2>/dev/null)
# SAY prints what a target is about to do, before a silence that can last
# minutes on a fresh clone (module downloads, a cold build cache).
SAY = @printf '%s\n' 

.DEFAULT_GOAL := help
.PHONY: help build test lint fuzz demo up-local bench conformance conformance-cluster images up up-observability down clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/wxpushd, bin/mockwx and bin/wxload, static (CGO_ENABLED=0)
	$(SAY) "build: compiling the three programs (the first build downloads modules and takes a few minutes; later builds reuse Go's build cache)..."
	@mkdir -p $(BIN)
	@if [ -z "$(CMDS)" ]; then echo "build: no programs yet (internal/wechat only)"; fi
	@for d in $(CMDS); do \
		echo "go build -o $(BIN)/$$(basename $$d) ./$$d"; \
		$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/$$(basename $$d) ./$$d || exit 1; \
	done

test: ## go vet, then every hermetic test with the race detector
	$(SAY) "test: go vet ./... (the first run downloads modules and compiles everything: a few minutes)..."
	$(GO) vet ./...
	$(SAY) "test: go test -race ./... (a cold build cache compiles every package again with the race detector; each package prints ok or FAIL when it is done)..."
	CGO_ENABLED=1 $(GO) test -race -count=1 ./...

lint: ## gofmt, go vet and staticcheck (pinned in go.mod)
	$(SAY) "lint: gofmt, go vet, staticcheck (the first run builds staticcheck)..."
	@out=$$(gofmt -l .); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

fuzz: ## run every native fuzz target for FUZZTIME each (default 10s)
	$(SAY) "fuzz: listing the fuzz targets (compiles the test binaries first)..."
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $$pkg || exit 1; \
		done; \
	done

demo: $(BIN)/wxload ## run the smoke scenario on the embedded stack (Redis, mockwx, wxpushd in one process); prints the report's path
	$(SAY) "demo: running the smoke scenario (about 30 s: 10 s of load, then every message followed to its delivery report)..."
	$(BIN)/wxload demo

# bin/wxload, rebuilt only when one of GO_SOURCES changed.
$(BIN)/wxload: $(GO_SOURCES)
	$(SAY) "building $(BIN)/wxload (the first build downloads modules and takes a few minutes; later builds reuse Go's build cache)..."
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./loadtest/cmd/wxload

up-local: $(BIN)/wxload ## keep the embedded stack running on 127.0.0.1:8080 (mockwx :9000) until Ctrl-C; prints a first message to send (UPFLAGS=--instances 2 ...)
	@# The binary itself, not go run: Ctrl-C reaches wxload, which tears its stack down and exits 0 (go run would report exit 1).
	@$(BIN)/wxload up $(UPFLAGS)

# ACCEPT_TABLE turns BenchmarkAcceptVsBareGin's metrics into one row per
# client concurrency, then the peak (each side's best rate) row.
ACCEPT_TABLE := '/^Benchmark/ { for (i = 3; i < NF; i += 2) m[$$(i+1)] = $$i; \
	printf "  %-8s %11s %14s %7s %16s %19s %17s\n", "clients", "bare req/s", "wxpushd req/s", "ratio", "bare CPU us/req", "wxpushd CPU us/req", "redis CPU us/msg"; \
	for (c = 16; c <= 256; c *= 4) printf "  %-8d %11.0f %14.0f %7.3f %16.1f %19.1f %17s\n", c, m["bare_req/s_c" c], m["wxpushd_req/s_c" c], m["ratio_c" c], m["bare_cpu_us/req_c" c], m["wxpushd_cpu_us/req_c" c], (("redis_cpu_us/msg_c" c) in m) ? sprintf("%.1f", m["redis_cpu_us/msg_c" c]) : "-"; \
	printf "  %-8s %11.0f %14.0f %7.3f   (each side at its best concurrency)\n", "peak", m["bare_peak_req/s"], m["wxpushd_peak_req/s"], m["peak_ratio"]; \
	printf "  target: ratio >= 0.60 at each concurrency; real Redis: %s\n", m["real_redis"] == 1 ? "yes" : "no" }'

# METRICS prints a benchmark line's metrics, one per line.
METRICS := '/^Benchmark/ {for (i = 3; i < NF; i += 2) printf "  %-20s %s\n", $$(i+1), $$i}'

# WXPUSHD_BENCH runs wxpushd's two benchmarks; REDIS_URL chooses the Redis.
WXPUSHD_BENCH = \
	echo "wxpushd POST /v1/messages (auth, validation, durable enqueue) vs a bare Gin handler decoding the same JSON:"; \
	$(GO) test -run '^$$' -bench 'AcceptVsBareGin' -benchtime $(BENCHN)x ./service/wxpushd/ | awk $(ACCEPT_TABLE); \
	echo "wxpushd delivery (post, queue, send to mockwx, record) vs the same template sends made directly (16 senders, one token):"; \
	$(GO) test -run '^$$' -bench 'DeliveryVsDirectSend' -benchtime $(BENCHN)x ./service/wxpushd/ | \
		awk '/Redis commands per delivered message/ {sub(/^.*bench_test.go:[0-9]+: /, ""); last = $$0} /Redis commands wxpushd sent per/ {sub(/^.*bench_test.go:[0-9]+: /, ""); sent = $$0} '$(METRICS)' END {if (sent != "") print "  " sent; if (last != "") print "  " last; print "  targets (issue 17): ratio >= 0.40, redis_cmds/msg <= 1.0, redis_cpu_us/msg <= 60"}'

bench: ## side-by-side performance ratios, measured in one run (BENCHN requests per side, and per concurrency in the accept sweep)
	$(SAY) "bench: compiling the benchmarks, then about 5 minutes of measurements (each section prints when it is done)..."
	@if command -v redis-server >/dev/null 2>&1; then \
		if redis-cli -p 6393 ping >/dev/null 2>&1; then echo "bench: something already answers on 127.0.0.1:6393; stop it first"; exit 1; fi; \
		dir=$$(mktemp -d); redis-server --port 6393 --bind 127.0.0.1 --save '' --appendonly no --dir $$dir --daemonize yes --pidfile $$dir/pid >/dev/null; sleep 0.3; \
		{ [ -s $$dir/pid ] && kill -0 $$(cat $$dir/pid) 2>/dev/null && redis-cli -p 6393 ping >/dev/null 2>&1; } || { echo "bench: redis-server did not start on 127.0.0.1:6393"; rm -rf $$dir; exit 1; }; \
		export REDIS_URL=redis://127.0.0.1:6393/0; $(WXPUSHD_BENCH); \
		kill $$(cat $$dir/pid); rm -rf $$dir; \
		echo "Redis Cluster of 3 masters, wxpushd's queue in 6 partitions: keys per master after 10,000 messages (target: max/min <= 1.3):"; \
		$(GO) test -count=1 -run 'TestPartitionsOnCluster' -v ./service/internal/store/ | sed -n 's/^ *partition_test.go:[0-9]*: /  /p'; \
	else \
		echo "(redis-server not installed: wxpushd is measured against the embedded store; install redis-server for the real figures)"; \
		$(WXPUSHD_BENCH); \
	fi
	@echo "mockwx template send vs a bare net/http handler decoding the same JSON (same load generator, alternating rounds):"
	@$(GO) test -run '^$$' -bench 'TemplateSendVsBare' -benchtime $(BENCHN)x ./mockwx/ | awk $(METRICS)
	@echo "mockwx ledger, 10 million entries (bytes per entry, heap):"
	@$(GO) test -run 'TestLedgerTenMillionEntries' -v ./mockwx/ | grep -E 'bytes/entry|heap|ok|FAIL' | sed 's/^/  /'

# The container suites: images FROM scratch (deploy/*/Dockerfile), no pulls.
# Redis comes from WXPUSH_REDIS_IMAGE; when it is unset and redis:7-alpine
# is not in the local cache, deploy/build.sh builds one from Debian's
# redis-server.
CONFORMANCE_RUN ?= .
COMPOSE := $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

conformance: ## run the conformance suites and mockwx/mockwxcontainer's tests in containers (testcontainers-go; needs Docker, pulls nothing)
	@docker info >/dev/null 2>&1 || { echo "conformance: Docker does not answer"; exit 1; }
	@img="$${WXPUSH_REDIS_IMAGE:-}"; \
	if [ -z "$$img" ]; then \
		if docker image inspect redis:7-alpine >/dev/null 2>&1; then img=redis:7-alpine; \
		else img=$$(deploy/build.sh redis); fi; \
	fi; \
	echo "conformance: Redis image $$img; compiling the suites, then running them in containers (about 8 minutes; the summary prints at the end)"; \
	out=$$(mktemp); \
	WXPUSH_CONFORMANCE=containers WXPUSH_REDIS_IMAGE=$$img TESTCONTAINERS_RYUK_DISABLED=true \
	TESTCONTAINERS_HOST_OVERRIDE=$${TESTCONTAINERS_HOST_OVERRIDE:-127.0.0.1} \
		$(GO) test -tags containers -count=1 -timeout 15m -v -run '$(CONFORMANCE_RUN)' ./conformance/ >$$out 2>&1; \
	status=$$?; \
	grep -E '^(--- |    --- |ok|FAIL|PASS)|_test\.go:|containers\.go:|harness\.go:' $$out; \
	[ $$status -eq 0 ] || { echo "conformance: full log follows"; tail -n 200 $$out; }; \
	echo "conformance: mockwx/mockwxcontainer (the mock in a container for other projects' tests), after the suites: never two at once"; \
	TESTCONTAINERS_RYUK_DISABLED=true TESTCONTAINERS_HOST_OVERRIDE=$${TESTCONTAINERS_HOST_OVERRIDE:-127.0.0.1} \
		$(GO) test -tags containers -count=1 -timeout 15m -v -run '$(CONFORMANCE_RUN)' ./mockwx/mockwxcontainer/ >$$out 2>&1; \
	mstatus=$$?; \
	grep -E '^(--- |    --- |ok|FAIL|PASS)|_test\.go:' $$out; \
	[ $$mstatus -eq 0 ] || { echo "conformance: mockwxcontainer's full log follows"; tail -n 100 $$out; status=$$mstatus; }; \
	rm -f $$out; \
	for label in wxpush.conformance wxpush.mockwxcontainer; do \
		ids=$$(docker ps -aq --filter label=$$label=true); [ -z "$$ids" ] || docker rm -f $$ids >/dev/null; \
		nets=$$(docker network ls -q --filter label=$$label=true); [ -z "$$nets" ] || docker network rm $$nets >/dev/null; \
	done; \
	exit $$status

# The suites that lean on the store (retries, idempotency, kill -9, Redis
# outages) in-process on a private Redis Cluster: 3 masters + 3 replicas,
# redis-server processes on loopback (internal/rediscluster), one cluster
# per suite. WXPUSH_REDIS_CLUSTER_PORTS=LO-HI confines the nodes to a port
# range (bus ports +10000); unset, they take free ports.
CLUSTER_RUN ?= ^(TestRetry|TestIdempotency|TestCrash|TestRedis)$$

conformance-cluster: ## run the retry, idempotency, crash and redis suites in-process on a Redis Cluster of 3 masters + 3 replicas (needs redis-server and redis-cli)
	@command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || \
		{ echo "conformance-cluster: redis-server and redis-cli are needed (apt-get install redis-server)"; exit 1; }
	$(SAY) "conformance-cluster: compiling the suites, then TestRetry, TestIdempotency, TestCrash and TestRedis, each on a Redis Cluster of its own (about 40 s after the build; the summary lines print at the end)..."
	@out=$$(mktemp); \
	WXPUSH_CONFORMANCE=inprocess WXPUSH_CONFORMANCE_REDIS=cluster \
		$(GO) test -count=1 -timeout 10m -v -run '$(CLUSTER_RUN)' ./conformance/ >$$out 2>&1; \
	status=$$?; \
	grep -E '^(--- |ok|FAIL|PASS)|^    --- (FAIL|SKIP)|_test\.go:' $$out; \
	[ $$status -eq 0 ] || { echo "conformance-cluster: full log follows"; tail -n 200 $$out; }; \
	rm -f $$out; \
	exit $$status

images: ## fill the build contexts deploy/*/rootfs/ and build the FROM-scratch images of wxpushd, mockwx and Redis (no pull)
	$(SAY) "images: compiling static wxpushd and mockwx, copying Debian's redis-server, building the images..."
	@deploy/build.sh wxpushd mockwx redis

up: images ## build the images, start the stack with docker compose (Redis, mockwx, two wxpushd); prints a first message to send
	@$(COMPOSE) up -d
	@for i in $$(seq 90); do \
		$(GO) run ./service/cmd/wxpushd -healthcheck http://127.0.0.1:8081/readyz >/dev/null 2>&1 && \
		$(GO) run ./service/cmd/wxpushd -healthcheck http://127.0.0.1:8082/readyz >/dev/null 2>&1 && break; \
		[ $$i -eq 90 ] && { echo "up: the service did not become ready in 90 s"; $(COMPOSE) ps; exit 1; }; \
		sleep 1; \
	done
	@key=$${WXPUSH_API_KEYS:-compose-dev-key-0123456789abcdef}; \
		$(GO) run ./loadtest/cmd/wxload up --service http://127.0.0.1:8081,http://127.0.0.1:8082 \
			--mock http://127.0.0.1:9000 --api-key "$${key%%,*}"
	@echo "(make down stops it)"

up-observability: ## make up, plus Prometheus (compose profile observability: scrapes both wxpushd, loads deploy/prometheus/alerts.yml); prints its URL
	@if [ -z "$${WXPUSH_PROMETHEUS_IMAGE:-}" ]; then echo "up-observability: Prometheus image $$(deploy/build.sh prometheus)"; fi
	@COMPOSE_PROFILES=observability $(MAKE) --no-print-directory up
	@for i in $$(seq 60); do \
		$(GO) run ./service/cmd/wxpushd -healthcheck http://127.0.0.1:9090/-/ready >/dev/null 2>&1 && break; \
		[ $$i -eq 60 ] && { echo "up-observability: Prometheus did not become ready in 60 s"; $(COMPOSE) --profile observability ps; exit 1; }; \
		sleep 1; \
	done
	@echo "Prometheus: http://127.0.0.1:9090 (alerts: http://127.0.0.1:9090/classic/alerts, targets: http://127.0.0.1:9090/classic/targets; Debian's build serves the classic UI); Grafana dashboard to import: deploy/grafana/wxpush.json"

down: ## stop the docker compose stack and remove its volumes
	$(COMPOSE) --profile loadtest --profile observability down -v --remove-orphans

clean: ## remove build output and run directories
	rm -rf $(BIN) reports/out runs
