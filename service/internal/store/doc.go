// Package store is wxpushd's Redis layer: message records, idempotency
// keys, the durable queue (a stream with a consumer group, a delayed-retry
// sorted set, a dead-letter stream) and the msgid index. Every key carries
// the hash tag {wxp} so multi-key scripts stay in one Cluster slot.
//
// Enqueue is one Lua script per message: the idempotency check, the record
// and the stream entry are written atomically, so a 202 is only ever given
// for a message that is stored, and concurrent requests with one key
// create one message.
//
// Delivery reports (delivery.go) are recorded by the callback endpoint into
// a stream of their own and applied by a processor: sent becomes delivered
// or failed in one idempotent script, and a report that arrives before the
// send is settled is parked until Settle applies it.
package store
