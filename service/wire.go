package service

import "time"

// SendRequest is the body of POST /v1/messages: one template message.
type SendRequest struct {
	// App names the configured WeChat app; empty means the only app, or the
	// app named "default".
	App         string               `json:"app,omitempty"`
	ToUser      string               `json:"touser"`
	TemplateID  string               `json:"template_id"`
	URL         string               `json:"url,omitempty"`
	MiniProgram *MiniProgram         `json:"miniprogram,omitempty"`
	Data        map[string]DataValue `json:"data"`
}

// MiniProgram is the mini program a message jumps to.
type MiniProgram struct {
	AppID    string `json:"appid"`
	PagePath string `json:"pagepath,omitempty"`
}

// DataValue is the value of one template placeholder.
type DataValue struct {
	Value string `json:"value"`
	Color string `json:"color,omitempty"`
}

// BatchItem is one message of a batch, with its own idempotency key.
type BatchItem struct {
	SendRequest
	IdempotencyKey string `json:"idempotency_key,omitempty"`
}

// BatchRequest is the body of POST /v1/messages/batch (1 to MaxBatch items).
type BatchRequest struct {
	Messages []BatchItem `json:"messages"`
}

// MaxBatch is the largest batch POST /v1/messages/batch accepts.
const MaxBatch = 1000

// Accepted answers a message that was durably queued (HTTP 202).
type Accepted struct {
	ID     string `json:"id"`
	Status Status `json:"status"`
}

// BatchResult is one item's outcome in a batch answer, in request order.
type BatchResult struct {
	Index      int    `json:"index"`
	StatusCode int    `json:"status_code"` // what POST /v1/messages would have answered
	ID         string `json:"id,omitempty"`
	Status     Status `json:"status,omitempty"`
	Replayed   bool   `json:"replayed,omitempty"` // an idempotency key matched an earlier request
	Error      *Error `json:"error,omitempty"`
}

// BatchResponse is the body of a batch answer: 202 when every item was
// accepted (or replayed), 207 when some were, and 400 (409 when every item
// was an idempotency conflict) when none was, with Error set.
type BatchResponse struct {
	// Error is set when no item was accepted, so that the answer is an
	// API error like any other, with the per-item errors in Results.
	Error    *Error        `json:"error,omitempty"`
	Accepted int           `json:"accepted"`
	Rejected int           `json:"rejected"`
	Results  []BatchResult `json:"results"`
}

// Status is where a message is in its life.
type Status string

// The statuses, in the order a message moves through them:
// queued -> sending -> (retrying -> sending)* -> sent -> delivered, or failed.
const (
	StatusQueued    Status = "queued"
	StatusSending   Status = "sending"
	StatusRetrying  Status = "retrying"
	StatusSent      Status = "sent"      // WeChat accepted it and returned a msgid
	StatusDelivered Status = "delivered" // WeChat's delivery report said success
	StatusFailed    Status = "failed"
)

// Terminal reports whether no further send will be made for the status.
func (s Status) Terminal() bool {
	return s == StatusSent || s == StatusDelivered || s == StatusFailed
}

// Reasons a message failed.
const (
	ReasonPermanentErrcode  = "permanent_errcode"  // WeChat refused it for good (40003, 43004, 47003...)
	ReasonAttemptsExhausted = "attempts_exhausted" // every attempt failed transiently
	ReasonUserBlock         = "user_block"         // delivery report: the user blocks the account
	ReasonSystemFailed      = "system_failed"      // delivery report: WeChat failed it
	ReasonFreqLimit         = "freq_limit"         // delivery report: per-user frequency limit
	ReasonDeliveryFailed    = "failed"             // delivery report with an unknown failure status
	ReasonUnknownApp        = "unknown_app"        // the message's app is no longer configured
	// ReasonUnconfirmed: an earlier attempt's outcome is unknown (WeChat
	// may have sent it: timeout, reset, 5xx, garbled answer, a worker that
	// died mid-send) and WeChat's client_msg_id dedup window for it is
	// over, so a resend could reach the user twice: it is not resent.
	ReasonUnconfirmed = "unconfirmed"
)

// Message is the body of GET /v1/messages/{id}.
type Message struct {
	ID          string     `json:"id"`
	App         string     `json:"app"`
	ToUser      string     `json:"touser"`
	TemplateID  string     `json:"template_id"`
	Status      Status     `json:"status"`
	Reason      string     `json:"reason,omitempty"` // why it failed
	Attempts    int        `json:"attempts"`
	MsgID       int64      `json:"msgid,omitempty"` // WeChat's msgid, once sent
	LastError   *SendError `json:"last_error,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	SentAt      *time.Time `json:"sent_at,omitempty"`
	DeliveredAt *time.Time `json:"delivered_at,omitempty"`
	// DeliveryStatus is the Status of WeChat's delivery report, as WeChat
	// sent it ("success", "failed:user block"...), once a report arrived:
	// for a failure with reason "failed" it is the only detail.
	DeliveryStatus string `json:"delivery_status,omitempty"`
	// RequestID is the X-Request-Id of the request that accepted the
	// message (generated when it had none); TraceParent its W3C
	// traceparent, when valid.
	RequestID   string `json:"request_id,omitempty"`
	TraceParent string `json:"traceparent,omitempty"`
	// Redrives counts the times an operator put the message back in the
	// queue after it failed.
	Redrives int `json:"redrives,omitempty"`
	// History is the message's timeline, oldest first (GET
	// /v1/messages/{id} only; search leaves it out).
	History []HistoryEvent `json:"history,omitempty"`
}

// SendError is the last error WeChat (or the network) gave for a message.
// Errcode is 0 for transport failures, whose text is in ErrMsg.
type SendError struct {
	ErrCode int    `json:"errcode"`
	ErrMsg  string `json:"errmsg"`
}

// ErrorResponse is the body of every API error.
type ErrorResponse struct {
	Error Error `json:"error"`
}

// Error describes an API error; Field names the offending request field.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// API error codes.
const (
	CodeInvalidRequest      = "invalid_request"      // 400
	CodeUnauthorized        = "unauthorized"         // 401
	CodeForbidden           = "forbidden"            // 403: a callback whose signature or timestamp does not check
	CodeNotFound            = "not_found"            // 404
	CodeIdempotencyConflict = "idempotency_conflict" // 409
	CodeMethodNotAllowed    = "method_not_allowed"   // 405
	CodePayloadTooLarge     = "payload_too_large"    // 413
	CodeRequestTimeout      = "request_timeout"      // 408: the body did not arrive within the read timeout
	CodeRateLimited         = "rate_limited"         // 429: over an inbound rate limit; see Retry-After
	CodeUnavailable         = "unavailable"          // 503
	CodeInternal            = "internal"             // 500
)

// HTTP headers of the API.
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderReplayed       = "Idempotent-Replayed"
	HeaderRequestID      = "X-Request-Id"
)

// AppState says whether an app sends.
type AppState string

// The app states.
const (
	AppActive AppState = "active" // messages are sent (within the rate limit)
	AppPaused AppState = "paused" // messages wait; none is sent or failed
)

// Reasons an app is paused (AppPause.Reason).
const (
	// PauseMinuteLimit: WeChat answered 45011 (per-minute frequency limit);
	// the app waits at least a minute.
	PauseMinuteLimit = "minute_limit"
	// PauseDailyQuota: WeChat answered 45009 (daily quota used up); the app
	// waits until its quota reset time or an operator resumes it.
	PauseDailyQuota = "daily_quota"
	// PauseTokenBudget: wxpushd's own daily budget of token calls is used
	// up; the app waits for the budget's reset (midnight Asia/Shanghai) or
	// an operator.
	PauseTokenBudget = "token_budget"
	// PauseAppError: WeChat refused the app itself (40013, 40125, 40164,
	// 48001, 89501-89507...): nothing it sends can succeed until an
	// operator fixes the cause and resumes it.
	PauseAppError = "app_error"
)

// AppPause describes why and until when an app is paused.
type AppPause struct {
	Reason  string    `json:"reason"`
	ErrCode int       `json:"errcode,omitempty"` // WeChat's errcode that caused it
	ErrMsg  string    `json:"errmsg,omitempty"`
	Since   time.Time `json:"since"`
	// Until is when the pause ends by itself; absent: only an operator
	// (POST /v1/apps/{app}/resume) or a successful probe ends it.
	Until *time.Time `json:"until,omitempty"`
	// NextProbeAt is when one waiting message will be sent to see whether
	// the cause has gone, when probing is configured.
	NextProbeAt *time.Time `json:"next_probe_at,omitempty"`
}

// TokenStatus describes an app's shared access token, never the token.
type TokenStatus struct {
	Mode            string     `json:"mode"` // stable or classic
	Cached          bool       `json:"cached"`
	FetchedAt       *time.Time `json:"fetched_at,omitempty"`
	ExpiresAt       *time.Time `json:"expires_at,omitempty"`
	BudgetUsedToday int        `json:"budget_used_today"` // token calls today by all instances
	DailyBudget     int        `json:"daily_budget"`
}

// AppStatus is the body of GET /v1/apps/{app} and of
// POST /v1/apps/{app}/resume.
type AppStatus struct {
	App   string    `json:"app"`
	AppID string    `json:"appid"`
	State AppState  `json:"state"`
	Pause *AppPause `json:"pause,omitempty"` // set when State is paused
	// RateLimit is the configured sends per second across all instances
	// (0: unlimited), RateBurst the burst it allows.
	RateLimit float64 `json:"rate_limit"`
	RateBurst int     `json:"rate_burst,omitempty"`
	// QuotaReset is when the daily quota resets ("00:00 Asia/Shanghai").
	QuotaReset string `json:"quota_reset"`
	// QuotaUsedToday counts the sends WeChat accepted since the last quota
	// reset, by all instances.
	QuotaUsedToday int64 `json:"quota_used_today"`
	// Waiting counts the app's messages held back by a pause or the rate
	// limit, in order of due time.
	Waiting       int64       `json:"waiting"`
	StatusWebhook bool        `json:"status_webhook"` // a status webhook is configured
	Token         TokenStatus `json:"token"`
}

// AppList is the body of GET /v1/apps.
type AppList struct {
	Apps []AppStatus `json:"apps"`
}

// StatusEvent is the body of a status webhook: the final status of one
// message. It is delivered at least once; Message.ID identifies the event,
// so a receiver deduplicates by it.
type StatusEvent struct {
	Event   string  `json:"event"` // EventMessageStatus
	Message Message `json:"message"`
}

// EventMessageStatus is StatusEvent.Event.
const EventMessageStatus = "message.status"

// Status webhook headers. The signature is
// "sha256=" + hex(HMAC-SHA256(secret, timestamp + "." + body)), where
// timestamp is the X-Wxpush-Timestamp value (unix seconds).
const (
	HeaderWebhookSignature = "X-Wxpush-Signature"
	HeaderWebhookTimestamp = "X-Wxpush-Timestamp"
	HeaderWebhookMessageID = "X-Wxpush-Message-Id"
)

// InboundEvent is the body of an event webhook (event_webhook_url): one
// push WeChat sent to the app's callback endpoint, an event or a user
// message, other than a delivery report. It is delivered at least once,
// in order per user; ID (also the X-Wxpush-Delivery-Id header) is the same
// on every delivery of one push, including WeChat's own retries of it, so
// a receiver that drops ids it has seen gets each push exactly once.
type InboundEvent struct {
	Event string `json:"event"` // EventInbound
	ID    string `json:"id"`    // the delivery id, "evt_" + 32 hex digits
	App   string `json:"app"`
	// Type is the push's Event for events (subscribe, unsubscribe, SCAN,
	// CLICK, VIEW, LOCATION, ... exactly as WeChat spells it) and its
	// MsgType for user messages (text, image, voice, video, shortvideo,
	// location, link, ...); types the service does not know are forwarded
	// as they are.
	Type    string `json:"type"`
	MsgType string `json:"msg_type"`
	OpenID  string `json:"openid"` // FromUserName
	// ToUserName is the account's original id (gh_...).
	ToUserName string `json:"to_user_name"`
	CreateTime int64  `json:"create_time"` // unix seconds, WeChat's clock
	// MsgID is a user message's MsgId, as a string (it exceeds 2^53).
	MsgID      string    `json:"msgid,omitempty"`
	ReceivedAt time.Time `json:"received_at"`
	// Fields holds every element of the (decrypted) push by name, as
	// WeChat sent it: text as a string, nested elements as objects,
	// repeated elements as arrays.
	Fields map[string]any `json:"fields"`
}

// EventInbound is InboundEvent.Event.
const EventInbound = "wechat.push"

// Event webhook headers, besides HeaderWebhookSignature and
// HeaderWebhookTimestamp (signed as the status webhook, with the event
// webhook's secret).
const (
	HeaderWebhookDeliveryID = "X-Wxpush-Delivery-Id" // InboundEvent.ID
	HeaderWebhookEventType  = "X-Wxpush-Event-Type"  // InboundEvent.Type
)

// ReasonNotFollowing: the user does not follow the account (an unsubscribe
// push, or WeChat's 43004 to an earlier send): the message was not sent,
// and no quota was spent. A later subscribe clears it.
const ReasonNotFollowing = "not_following"

// UserState is the body of GET /v1/apps/{app}/users/{openid}: what the
// service knows of one user.
type UserState struct {
	App    string `json:"app"`
	OpenID string `json:"openid"`
	// Following is null when nothing is known (no subscribe, unsubscribe
	// or 43004 seen).
	Following *bool `json:"following"`
	// Since is when the current Following state began (the push's
	// CreateTime, or the send that got 43004); Source is what told:
	// "event" or "errcode".
	Since  *time.Time `json:"since"`
	Source *string    `json:"source"`
	// LastEvent is the type of the user's latest push (by CreateTime), as
	// InboundEvent.Type, and LastEventAt its CreateTime.
	LastEvent   *string    `json:"last_event"`
	LastEventAt *time.Time `json:"last_event_at"`
}
