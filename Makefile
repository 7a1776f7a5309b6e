# Developer and CI entry points. `make` (or `make help`) lists the targets.
#
# Recipes are POSIX sh; logic longer than a line lives in scripts/.
# Variables: REDIS_PORT (dev server port, default 6379), REDIS_URL (server
# for cache-stats/cache-flush; for tests: use that server instead of
# spawning), REDIS_CLUSTER_URLS (tests: use that cluster instead of
# spawning), NAMESPACE and DRY_RUN (cache-flush), FUZZ_CASES and FUZZ_SEED
# (fuzz), CARGO (default cargo).

SHELL = /bin/sh
CARGO ?= cargo
REDIS_PORT ?= 6379
FUZZ_CASES ?= 20000

.DEFAULT_GOAL := help

.PHONY: help test test-all chaos fuzz fmt fmt-check clippy doc doc-docsrs features package-check \
	bench bench-cluster \
	bench-peers bench-codecs bench-analytics \
	redis-up redis-down cache-stats cache-flush demo load load-advisor dashboard-check clean

help:
	@echo "Usage: make <target>"
	@echo ""
	@echo "  test         ensure redis-server and redis-cli (installs them as root on Debian), run all tests"
	@echo "               (cargo nextest if available, else cargo test) and the doctests"
	@echo "  test-all     fmt-check + clippy + test + doc + doc-docsrs + features + package-check"
	@echo "               (what CI runs)"
	@echo "  chaos        chaos suite, full form: both examples under load, every Redis fault for 10 s"
	@echo "               (CHAOS_SECONDS, CHAOS_FAULTS, CHAOS_SEED, CHAOS_RPS; \`make test\` runs 1 s per fault)"
	@echo "  fuzz         the property tests with \$$FUZZ_CASES cases each (default 20000): both adapters"
	@echo "               cached vs uncached on Redis and memory (tests/fuzz_http.rs), the examples'"
	@echo "               list queries; \$$FUZZ_SEED=<seed> reruns a failure"
	@echo "  fmt          format the code"
	@echo "  fmt-check    check formatting"
	@echo "  clippy       lint everything, warnings are errors"
	@echo "  doc          build the docs, warnings are errors"
	@echo "  doc-docsrs   the published crates' docs as docs.rs builds them (all features, --cfg docsrs,"
	@echo "               rustdoc with RUSTC_BOOTSTRAP=1 for doc_cfg), and a check of the feature badges"
	@echo "  features     check cache-core with no features, each feature alone, all features"
	@echo "  package-check  cargo package (verified builds) of the published crates, their file lists"
	@echo "               and sizes, then cargo publish --dry-run (PUBLISH_DRY_RUN=0 skips it)"
	@echo "  bench        run the benches of the cache-tests crate"
	@echo "  bench-cluster  Redis Cluster vs one node (own 3+3 cluster, ~1 min): hit p50/p99 and"
	@echo "               throughput (1 and 64 tasks), tag invalidation with 10k vs 1M background keys"
	@echo "  bench-peers  ours vs raw redis-rs, the cached crate, hitbox and tower-http-cache on one"
	@echo "               redis-server: hit latency and throughput, miss+store, stampede, Redis killed,"
	@echo "               and the same Axum app over HTTP (every body checked); not run by \`make test\`"
	@echo "  bench-codecs the compact codec candidates (bitcode, postcard, MessagePack): time and size"
	@echo "  bench-analytics  recording overhead: req/s of a static Axum route without and with the"
	@echo "               analytics layer (memory and Redis stores), interleaved rounds, ratios printed"
	@echo "  redis-up     start a dev redis-server on port \$$REDIS_PORT (default 6379), prints REDIS_URL"
	@echo "  redis-down   stop that dev redis-server"
	@echo "  cache-stats  hit/miss, memory and key counts of \$$REDIS_URL (+ NAMESPACE=ns key count)"
	@echo "  cache-flush  delete the keys NAMESPACE:* on \$$REDIS_URL (NAMESPACE required; DRY_RUN=1 counts)"
	@echo "  demo         throw-away redis + gallery example + asserted demo walk (status, X-Cache-*)"
	@echo "  load         gallery load test: cached (Redis) vs uncached, p50/p95/p99, req/s, hit rate"
	@echo "  load-advisor the advisor validated on the gallery mix (~3 min): caching off for content items"
	@echo "               and lists, the advisor's ranking, its first suggestion applied (saving measured vs"
	@echo "               predicted), then the mix after a flush, cold vs warmed from analytics"
	@echo "  dashboard-check  the admin dashboard in headless Chromium (installs Debian's chromium as"
	@echo "               root when missing): gallery + traffic, screenshot target/dashboard/dashboard.png,"
	@echo "               fails unless the page rendered its routes; not run by \`make test\` or CI"
	@echo "  clean        cargo clean"

# REDIS_SERVER_BIN is exported so that the tests use the binary that
# ensure-redis.sh found or installed (it also makes sure redis-cli is there,
# for the local Redis Cluster of the cluster tests). The suites run under
# `with-cluster`: one local cluster, shared by the behaviour suites' cluster mode.
test:
	@bin=$$(sh scripts/ensure-redis.sh) || exit 1; \
	if [ -n "$$bin" ]; then REDIS_SERVER_BIN=$$bin; export REDIS_SERVER_BIN; fi; \
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
		echo "==> with-cluster $(CARGO) nextest run --workspace --all-features"; \
		$(CARGO) run -q -p cache-tests --bin with-cluster -- \
			$(CARGO) nextest run --workspace --all-features --no-tests=warn || exit 1; \
	else \
		echo "==> with-cluster $(CARGO) test --workspace --all-features (cargo-nextest not installed)"; \
		$(CARGO) run -q -p cache-tests --bin with-cluster -- \
			$(CARGO) test --workspace --all-features || exit 1; \
	fi; \
	echo "==> $(CARGO) test --workspace --all-features --doc"; \
	$(CARGO) test --workspace --all-features --doc

test-all: fmt-check clippy test doc doc-docsrs features package-check

# The chaos suite of tests/tests/chaos.rs in its full form; the report (one table per example)
# goes to stderr and to $(CARGO_TARGET_DIR or target)/tmp/chaos/{gallery,trigs}.txt.
chaos:
	@bin=$$(sh scripts/ensure-redis.sh) || exit 1; \
	if [ -n "$$bin" ]; then REDIS_SERVER_BIN=$$bin; export REDIS_SERVER_BIN; fi; \
	CHAOS_FULL=1; export CHAOS_FULL; \
	echo "==> CHAOS_FULL=1 $(CARGO) test -p cache-tests --all-features --test chaos"; \
	$(CARGO) test -p cache-tests --all-features --test chaos

# `make test` runs the same properties with 256 cases each. The minimized regression tests of
# fuzz_http.rs are not run here (they are in `make test`): this target looks for new failures.
fuzz:
	@bin=$$(sh scripts/ensure-redis.sh) || exit 1; \
	if [ -n "$$bin" ]; then REDIS_SERVER_BIN=$$bin; export REDIS_SERVER_BIN; fi; \
	FUZZ_CASES="$(FUZZ_CASES)"; export FUZZ_CASES; \
	echo "==> FUZZ_CASES=$$FUZZ_CASES: tests/fuzz_http.rs (Axum and Actix, Redis and memory)"; \
	$(CARGO) test -p cache-tests --test fuzz_http -- --nocapture \
		the_cached_copy_answers_like_the_uncached_one harness_two_uncached_copies_agree || exit 1; \
	echo "==> FUZZ_CASES=$$FUZZ_CASES: the examples' list queries (trigs, gallery)"; \
	$(CARGO) test -p trigs --test e2e -- list_queries_never_answer_5xx || exit 1; \
	$(CARGO) test -p gallery --test e2e -- list_queries_never_answer_5xx

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --all-features --no-deps

# As on docs.rs: `--cfg docsrs` turns on the nightly `doc_cfg` feature (the "Available on crate
# feature ... only" badges), so this one build runs rustdoc with RUSTC_BOOTSTRAP=1 on stable
# (rustdoc only: scripts/rustdoc-bootstrap.sh says why).
doc-docsrs:
	CARGO="$(CARGO)" sh scripts/check-docsrs.sh

features:
	CARGO="$(CARGO)" sh scripts/check-features.sh cache-core

package-check:
	CARGO="$(CARGO)" sh scripts/check-package.sh

bench:
	@bin=$$(sh scripts/ensure-redis.sh) || exit 1; \
	if [ -n "$$bin" ]; then REDIS_SERVER_BIN=$$bin; export REDIS_SERVER_BIN; fi; \
	$(CARGO) bench -p cache-tests

# Not part of `make test`: starts its own redis-server and 3+3 Redis Cluster, stops them at the end.
bench-cluster:
	@bin=$$(sh scripts/ensure-redis.sh) || exit 1; \
	if [ -n "$$bin" ]; then REDIS_SERVER_BIN=$$bin; export REDIS_SERVER_BIN; fi; \
	$(CARGO) bench -p cache-tests --bench cluster

bench-peers:
	@bin=$$(sh scripts/ensure-redis.sh) || exit 1; \
	if [ -n "$$bin" ]; then REDIS_SERVER_BIN=$$bin; export REDIS_SERVER_BIN; fi; \
	$(CARGO) bench -p cache-tests --bench peers && \
	$(CARGO) bench -p cache-tests --bench peers_http

bench-codecs:
	$(CARGO) bench -p cache-tests --bench codecs

# Not part of `make test`: starts its own redis-server.
bench-analytics:
	@bin=$$(sh scripts/ensure-redis.sh) || exit 1; \
	if [ -n "$$bin" ]; then REDIS_SERVER_BIN=$$bin; export REDIS_SERVER_BIN; fi; \
	$(CARGO) bench -p cache-tests --bench analytics

redis-up:
	@REDIS_PORT="$(REDIS_PORT)" sh scripts/dev-redis.sh up

redis-down:
	@REDIS_PORT="$(REDIS_PORT)" sh scripts/dev-redis.sh down

demo:
	@sh scripts/demo.sh

load:
	@sh scripts/load.sh

load-advisor:
	@sh scripts/load.sh --advisor --duration 20 --warmup 5

# Not part of `make test` or CI (needs Chromium): see scripts/dashboard-check.sh.
dashboard-check:
	@sh scripts/dashboard-check.sh

cache-stats:
	@REDIS_PORT="$(REDIS_PORT)" sh scripts/cache-admin.sh stats

cache-flush:
	@REDIS_PORT="$(REDIS_PORT)" sh scripts/cache-admin.sh flush

clean:
	$(CARGO) clean
