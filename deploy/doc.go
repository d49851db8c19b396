// Package deploy holds no code: it is the folder of what runs wxpushd in
// production (the images' Dockerfiles and deploy/build.sh, Prometheus alert
// rules, a Grafana dashboard, Kubernetes manifests; see deploy/README.md),
// and its tests keep those files true to the service. They check that every
// docker compose service builds FROM scratch from a folder here (so
// nothing is pulled) and that `docker compose config` accepts the file;
// they run `promtool check rules` and `promtool test rules` on the alert
// rules (skipped without promtool, except under CI=true), check that every
// metric name in the rules and the dashboard is one a live in-process
// wxpushd exports, and decode every Kubernetes manifest strictly into the
// Kubernetes API types and check its invariants.
package deploy
