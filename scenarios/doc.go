// Package scenarios defines wxload's declarative scenario format and holds
// the embedded catalog.
//
// A scenario says which stack to start (wxpushd instances and their
// settings, the queue's partitions, one Redis or a private Redis Cluster),
// how to program mockwx (apps, fault rules, and a timeline of
// actions such as adding a rule, expiring tokens, restarting Redis or
// killing an instance), what load to offer (an open-model pacer, the
// recipient pool, the template mix, duplicate and batch shares), and which
// expectations over summary.json decide the verdict, e.g.
//
//	expect:
//	  - delivery.lost == 0
//	  - name: accept latency
//	    expr: accept.latency_ms.p99 < 250
//
// Parse is strict: unknown keys, duplicate keys and invalid values are
// reported with the file, the line and the field path. Schema returns a
// JSON Schema for editors. Package loadtest runs scenarios.
package scenarios
