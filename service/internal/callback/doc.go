// Package callback is wxpushd's WeChat callback endpoint,
// GET/POST /wechat/callback/{app}, and the processor that turns WeChat's
// TEMPLATESENDJOBFINISH delivery reports into message statuses.
//
// # The endpoint
//
// GET is URL verification: the signature over (token, timestamp, nonce) is
// checked and echostr is answered as it came. When the request also carries
// msg_signature (an encrypted echostr, as WeCom sends it and as some WeChat
// documents describe for safe mode), msg_signature is checked over the
// echostr and the decrypted echostr is answered.
//
// POST is a push in plaintext, compatible or safe mode (encrypt_type=aes).
// The query is checked before the body is read: the URL signature over
// (token, timestamp, nonce), the timestamp (within MaxSkew of the clock),
// and the app's mode (apps.App.CallbackMode, wxpushd's callback_mode): an app in safe or
// compat mode takes only pushes with encrypt_type=aes and msg_signature, so
// a plaintext push with a valid URL signature (a downgrade: in plaintext
// mode no signature covers the body) is refused. Then internal/wechat's
// Crypter checks msg_signature over the Encrypt element, decrypts with the
// current EncodingAESKey then the previous one (key rotation), and checks
// the appid trailer and that the outer and inner ToUserName agree; only
// the decrypted message counts, never the plaintext fields of compatible
// mode beside it. Answers:
//
//	404  the app is not configured, or has no callback token
//	413  the body is over MaxBody (64 KiB by default)
//	400  malformed XML (including DOCTYPE, entities, deep nesting), a bad
//	     envelope, or an encrypted push to an app without EncodingAESKey
//	403  a missing or wrong signature, a wrong appid or ToUserName, a
//	     timestamp outside the window, a downgrade, or a replay
//	503  the push could not be recorded: WeChat retries it
//	200  "success", or the app's passive reply: the push is recorded (or
//	     was already)
//
// Nothing is written for a rejected push.
//
// # Replays and forged reports
//
// A signed query can be captured (proxies and access logs keep URLs) and
// re-posted for as long as its timestamp passes, with any body in
// plaintext mode. The replay guard remembers each recorded query
// (timestamp, nonce, signatures) with a digest of its body for QueryTTL:
// the same query with the same body is WeChat's retry, answered "success";
// with another body it is a replay, refused with 403 and counted
// (result "replayed"). A delivery report is deduplicated by its MsgID and
// openid, and it applies only to a message whose touser is the report's
// FromUserName (else it changes nothing: outcome "forged"); a report that
// arrives before the send is recorded is parked under its openid, and
// only the one naming the message's touser is applied by the send. A final
// status (delivered or failed) is never changed by a later report.
//
// # Record first, process after
//
// WeChat waits 5 s for an answer and retries three times. A verified push
// costs the request path one Redis round trip, bounded by RecordTimeout
// (2 s by default): a script checks the replay guard, marks the push's
// dedup key (MsgID and openid for a delivery report, FromUserName+CreateTime+Event for other events, MsgId
// for user messages) with SET NX and a TTL, and appends a new delivery
// report to a Redis stream. A retry finds its key and is answered
// "success" without another record. When the record cannot be written in
// time, the answer is 503, never "success": WeChat retries, and a push is
// only acknowledged once it is stored.
//
// # Events and user messages
//
// Every other push (store.RecordPush, the same round trip) also updates
// the user's follower state (subscribe and unsubscribe, ordered by
// CreateTime) and, for an app with an event webhook, stores the push as a
// service.InboundEvent (every element of the decrypted push under Fields)
// in its user's queue for webhook.Forwarder, under a delivery id derived
// from the dedup key. The first of the app's Replies that matches is the
// answer: a text message sealed in the push's mode (encrypted and signed
// with msg_signature over the request's nonce when the push came
// encrypted), else "success"; a retry gets the same reply.
//
// Run, started by every wxpushd instance, reads the stream through a
// consumer group and applies each report with store.ApplyDelivery: sent
// becomes delivered (WeChat's "success") or failed with reason user_block,
// system_failed, freq_limit, or failed (an unknown failure status, kept raw
// in delivery_status). The transition is one Lua script and idempotent. A
// report that overtakes the worker's own write of sent and of the msgid
// index is parked and applied by that write (store.Settle). Reports that a
// stopped instance read but did not acknowledge are reclaimed by another
// after ReclaimAfter.
//
// The callback token, EncodingAESKeys and the push bodies are never logged
// and never reach metrics; labels are app names and a fixed set of results.
package callback
