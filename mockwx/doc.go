// Package mockwx is a faithful, programmable mock of the WeChat Official
// Account API (api.weixin.qq.com), for testing WeChat clients offline.
//
// A Server is an http.Handler that answers WeChat's routes at WeChat's
// paths with WeChat's semantics — always HTTP 200 and an errcode, errmsg
// ending in " rid: ..." — and an admin API under /_mock/ on the same
// listener:
//
//   - GET /cgi-bin/token: validates grant_type, appid and secret; each
//     call mints a token and the previous one stays valid for a grace
//     period (300 s) and then answers 40001; daily budget -> 45009.
//   - POST /cgi-bin/stable_token: a separate namespace; the same token
//     while valid, a successor in its last 300 s (both valid);
//     force_refresh at most 20 a day and 30 s apart.
//   - Every API call checks access_token: missing 41001, malformed 40014,
//     unknown or superseded beyond grace 40001, expired 42001.
//   - POST /cgi-bin/message/template/send: 40003, 40036, 40037, 47001,
//     47003 (typed fields, with the data.X.value path), 40165, 43004,
//     45009; client_msg_id deduplicates per (appid, openid, id) for 10
//     minutes, answering the original msgid; msgids exceed 2^53. Each
//     accepted send is recorded in the ledger and its TEMPLATESENDJOBFINISH
//     is pushed to the app's callback URL in plain, compat or safe mode,
//     signed and encrypted with internal/wechat, retried like WeChat.
//   - POST /cgi-bin/clear_quota (10 a month, 48006), GET /cgi-bin/getcallbackip.
//   - GET /cgi-bin/user/info, GET /cgi-bin/user/get (the followers the mock
//     knows, WeChat's end-of-list quirk: the page after the last has count
//     0, next_openid "" and no data), GET
//     /cgi-bin/template/get_all_private_template, POST
//     /cgi-bin/message/custom/send (text; 43004, 45015 outside 48 h of the
//     user's last interaction; recorded in the ledger as api custom_send).
//
// # Simulated users
//
// POST /_mock/events makes a user act (subscribe, unsubscribe, SCAN, CLICK,
// VIEW, LOCATION, text, image): it changes follow state and the user's last
// interaction at once, and pushes the event or message to the app's
// callback URL in the app's mode, with the elements real pushes carry (an
// empty EventKey on plain follows, an integer MenuId, decimal coordinates,
// an int64 MsgId on messages). GET /_mock/events lists each push with its
// outcome and decoded reply; GET /_mock/users/{openid} shows a user.
//
// Pushes — delivery reports and simulated users' — are retried as WeChat
// does: only when no answer comes in time (a timeout, a connection error,
// a non-200 status), 3 tries in all, with the same query and body. A 200
// answer settles a push: acked ("success" or 0 bytes, also in an encrypted
// envelope), replied (a valid passive reply) or reply_invalid (what WeChat
// shows the user as a service failure; not retried).
//
// # Fault rules
//
// Rules (POST /_mock/faults, or preloaded from the config) are evaluated
// in the order they were added. For each call, a rule applies when its
// endpoint matches ("*" covers the WeChat API endpoints; the pushes need an
// explicit "callback" or "event" rule), its match fields equal
// the call's, it is inside its after_ms/for_ms window and not exhausted
// (times). An applicable rule lets its first skip calls pass, then fires
// with its probability. Every firing rule adds latency (the largest
// wins); the first firing rule whose action answers decides the answer,
// and later such rules are passed over untouched.
//
// A rule's action is one of the kinds registered by name (ActionTypes),
// each a typed struct in its own action_<type>.go file that validates its
// attributes, says which endpoints it applies to and carries out its
// effect. It is given in typed form, {"action":{"type":"errcode",
// "errcode":45009}}, or by the kind's flat field, {"errcode":45009}, the
// original form, which keeps working:
//
//   - errcode (ErrCodeAction), http_status (HTTPStatusAction): answered
//     instead of processing the call; not on "event".
//   - fault (FaultAction) reset, timeout, malformed, empty: the call is
//     processed (a send is accepted and delivered, a token is minted) and
//     then the answer is lost — a connection reset, a hang until the
//     client gives up, half a JSON body, or an empty body. This is the
//     case client_msg_id and the token grace period exist for. On a
//     "callback" rule any fault loses the push entirely; on an "event"
//     rule it loses the app's answer to one try (WeChat retries).
//   - delivery_status (DeliveryStatusAction): the Status of the pushed
//     TEMPLATESENDJOBFINISH; on "template_send" and "callback" only.
//   - latency (LatencyAction): only a delay, the same as a rule with a
//     latency and no action. A rule's latency field adds a delay to any
//     other action.
//
// All randomness (tokens, msgids, request ids, probabilities, latencies,
// nonces) comes from RNGs seeded by Options.Seed, so the same seed and the
// same requests give the same answers. POST /_mock/reset returns the mock
// to its starting state, preloaded rules included.
//
// The admin API is a test tool: never expose a mock to a network you do
// not control. MOCKWX_ADMIN_TOKEN (Options.AdminToken) guards it with a
// bearer token.
//
// Client drives the admin API from Go; package mockwxtest starts a mock on
// 127.0.0.1:0 for a test.
package mockwx
