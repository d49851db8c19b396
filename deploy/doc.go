// Package deploy holds no code: it is the folder of what runs wxpushd in
// production (Prometheus alert rules, a Grafana dashboard, Kubernetes
// manifests; see deploy/README.md), and its tests keep those files true to
// the service. They run `promtool check rules` and `promtool test rules`
// on the alert rules (skipped without promtool, except under CI=true),
// check that every metric name in the rules and the dashboard is one a
// live in-process wxpushd exports, and decode every Kubernetes manifest
// strictly into the Kubernetes API types and check its invariants.
package deploy
