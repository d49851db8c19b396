// Package loadtest runs wxload scenarios: it starts the embedded stack
// (Redis, mockwx and N wxpushd instances in-process on loopback) or
// connects to a running deployment, programs the mock, offers an
// open-model load with vegeta while the scenario's timeline runs, waits for
// the pipeline to drain, and accounts for every message end to end by the
// marker each one carries to the mock's ledger.
//
// A run directory holds summary.json (the verdict and the figures
// expectations read), series.json (second-by-second figures and fault
// bands for charts), results.bin (vegeta's raw results), ledger.jsonl (the
// mock's ledger entries of the run), histograms.json (its latency
// histograms), summary.txt and index.html.
//
// A run can be split over several generators (Options.Shard: wxload run
// --shard I/N --run-id ID): each shard offers its share of the load with
// its own markers and adds messages.jsonl and shard.json to its run
// directory; Merge combines the shards' directories into one.
package loadtest
