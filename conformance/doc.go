// Package conformance proves wxpushd's guarantees black-box: retries,
// idempotency, token sharing, crash recovery, Redis outages, delivery
// reports, pacing and a throughput floor. The suites (this package's
// tests) are written once against Env and run on three backends, all
// started by package internal/harness (which wxload uses too):
//
//   - in-process (the default, used by make test): mockwx, N wxpushd
//     instances and a TCP gate in front of Redis (miniredis, or REDIS_URL
//     with a private key prefix per test), all on loopback; with
//     WXPUSH_CONFORMANCE_REDIS=cluster (make conformance-cluster) a private
//     Redis Cluster of 3 masters and 3 replicas instead, reached without
//     gates (its client dials every node), so the cut of one instance
//     skips and a Redis outage stops every node;
//   - containers (WXPUSH_CONFORMANCE=containers with -tags containers,
//     used by make conformance): images built FROM scratch from static
//     binaries, a private Docker network, kills and partitions through the
//     Docker API (testcontainers-go);
//   - external (WXPUSH_CONFORMANCE=external): an existing deployment named
//     by WXPUSH_CONFORMANCE_SERVICE_URLS, _MOCK_URL and _API_KEY; suites
//     that need control operations skip.
//
// Assertions read the mock's ledger (what WeChat would have seen) and the
// service's status API (what a client sees). Each suite prints one summary
// line with its figures (t.Logf), so CI logs carry the numbers.
package conformance
