package service

import "time"

// The operator's side of the API: search, a message's history, dead
// letters and redrive.

// HeaderTraceParent is the W3C trace context header; a valid value on the
// request that accepts a message is kept as Message.TraceParent.
const HeaderTraceParent = "traceparent"

// History event types (HistoryEvent.Type).
const (
	HistoryAccepted       = "accepted"        // the API accepted the message (RequestID, TraceParent)
	HistoryAttempt        = "attempt"         // one send attempt (Attempt, Instance, Outcome, ErrCode, Error, LatencyMS)
	HistoryPaused         = "paused"          // the message waits for its app's pause (Reason)
	HistoryDeliveryReport = "delivery_report" // WeChat's TEMPLATESENDJOBFINISH (Status, Outcome)
	HistoryRedrive        = "redrive"         // an operator put the failed message back in the queue (Forced, RequestID, Reason: the failure it had)
	HistoryFailed         = "failed"          // the message failed without an attempt (Reason)
)

// Attempt outcomes (HistoryEvent.Outcome of an attempt).
const (
	OutcomeSent   = "sent"   // WeChat accepted it
	OutcomeRetry  = "retry"  // it is sent again later
	OutcomeFailed = "failed" // it failed for good (Reason)
	OutcomePaused = "paused" // its app was paused by this attempt's answer; it waits
)

// HistoryEvent is one entry of a message's timeline, oldest first. Fields
// that do not apply to the event's type are omitted.
type HistoryEvent struct {
	At   time.Time `json:"at"`
	Type string    `json:"type"`
	// Instance is the wxpushd instance (its consumer name) that made an
	// attempt or applied a report.
	Instance string `json:"instance,omitempty"`
	Attempt  int    `json:"attempt,omitempty"`
	Outcome  string `json:"outcome,omitempty"`
	// ErrCode is WeChat's errcode of an attempt (0 for a transport error,
	// whose text is in Error); absent for a send WeChat accepted.
	ErrCode   *int     `json:"errcode,omitempty"`
	Error     string   `json:"error,omitempty"`
	LatencyMS *float64 `json:"latency_ms,omitempty"`
	MsgID     int64    `json:"msgid,omitempty"`
	// Status is a delivery report's Status as WeChat sent it.
	Status      string `json:"status,omitempty"`
	Reason      string `json:"reason,omitempty"`
	RequestID   string `json:"request_id,omitempty"`
	TraceParent string `json:"traceparent,omitempty"`
	Forced      bool   `json:"forced,omitempty"`
}

// MaxHistory bounds a message's stored timeline: the accepted event and the
// latest MaxHistory events after it are kept.
const MaxHistory = 64

// MessageQuery is GET /v1/messages: every field is optional, and the
// filters combine (AND). Times compare the message's acceptance time.
type MessageQuery struct {
	App        string
	ToUser     string
	Status     Status
	Reason     string // implies Status failed
	TemplateID string
	RequestID  string
	Since      time.Time // inclusive
	Until      time.Time // exclusive
	Limit      int       // 1..MaxSearchLimit; 0: DefaultSearchLimit
	Cursor     string    // NextCursor of the previous page
}

// Search limits.
const (
	DefaultSearchLimit = 50
	MaxSearchLimit     = 500
)

// MessagePage is the body of GET /v1/messages and GET /v1/deadletters:
// newest first. NextCursor is set when more may follow (a page can be
// shorter than the limit, even empty, when a selective filter scanned many
// messages that did not match); pass it as cursor for the next page. Pages
// are stable while new messages arrive: a cursor never returns a message
// twice.
type MessagePage struct {
	Messages   []Message `json:"messages"`
	NextCursor string    `json:"next_cursor,omitempty"`
}

// RedriveRequest is the optional body of POST /v1/messages/{id}/redrive.
type RedriveRequest struct {
	// Force redrives a message whose failure says a resend may reach the
	// user twice (unconfirmed) or cannot succeed (not_following,
	// permanent_errcode, user_block).
	Force bool `json:"force,omitempty"`
}

// BulkRedriveRequest is the body of POST /v1/deadletters/redrive: the
// failed messages matching App and Reason (both optional), newest first,
// at most Limit of them.
type BulkRedriveRequest struct {
	App    string `json:"app,omitempty"`
	Reason string `json:"reason,omitempty"`
	Force  bool   `json:"force,omitempty"`
	Limit  int    `json:"limit,omitempty"` // 1..MaxBulkRedrive; 0: DefaultBulkRedrive
	Cursor string `json:"cursor,omitempty"`
}

// Bulk redrive limits.
const (
	DefaultBulkRedrive = 100
	MaxBulkRedrive     = 1000
)

// BulkRedriveResult is the answer of POST /v1/deadletters/redrive.
type BulkRedriveResult struct {
	Matched  int `json:"matched"`  // failed messages examined
	Redriven int `json:"redriven"` // put back in the queue
	// Skipped counts the others by why: "force_required" (their reason
	// needs force), "not_failed" (they changed since they were listed).
	Skipped map[string]int `json:"skipped"`
	IDs     []string       `json:"ids"` // the redriven messages
	// NextCursor is set when more failed messages match: pass it as
	// cursor to go on.
	NextCursor string `json:"next_cursor,omitempty"`
}

// Redrive error codes (409).
const (
	CodeNotFailed     = "not_failed"     // only a failed message can be redriven
	CodeForceRequired = "force_required" // the failure's reason needs "force": true
)

// NeedsForce reports whether a failed message with reason needs
// RedriveRequest.Force: a resend may reach the user twice (unconfirmed),
// or WeChat refused it for a reason a plain resend does not change.
func NeedsForce(reason string) bool {
	switch reason {
	case ReasonUnconfirmed, ReasonNotFollowing, ReasonPermanentErrcode, ReasonUserBlock:
		return true
	}
	return false
}

// Counts is one minute of the service's per-minute counters (all apps and
// instances), as the console's overview charts them.
type Counts struct {
	Minute    time.Time        `json:"minute"`
	Accepted  int64            `json:"accepted"`
	Sent      int64            `json:"sent"`
	Delivered int64            `json:"delivered"`
	Failed    map[string]int64 `json:"failed,omitempty"` // by reason
	Redriven  int64            `json:"redriven,omitempty"`
}

// QueueState is the queue part of Overview.
type QueueState struct {
	Backlog int64 `json:"backlog"` // queued, not yet taken by a worker
	Pending int64 `json:"pending"` // taken by a worker, not yet settled
	Delayed int64 `json:"delayed"` // waiting for a retry time
	Waiting int64 `json:"waiting"` // held back by an app's pause or rate limit
	// OldestAgeSeconds is the age of the oldest queued entry.
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
}

// Overview is the body of GET /v1/overview: how the service is doing now.
type Overview struct {
	// Minutes are the per-minute counters of the last 24 hours, oldest
	// first, one per minute (minutes without traffic are zero).
	Minutes []Counts    `json:"minutes"`
	Queue   QueueState  `json:"queue"`
	Apps    []AppStatus `json:"apps"`
}
