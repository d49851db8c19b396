package store

import (
	"errors"
	"time"

	"github.com/wxpush/wxpush/service"
)

// Errors the store returns.
var (
	// ErrNotFound: no message with that id (never existed or past retention).
	ErrNotFound = errors.New("store: message not found")
	// ErrUnavailable wraps every failure to reach Redis: the API answers 503.
	ErrUnavailable = errors.New("store: redis unavailable")
	// ErrNotFailed: a redrive of a message that has not failed (409
	// not_failed).
	ErrNotFailed = errors.New("store: only a failed message can be redriven")
	// ErrForceRequired: a redrive without force of a message whose
	// failure reason needs it (service.NeedsForce; 409 force_required).
	ErrForceRequired = errors.New("store: this failure can be redriven only with force")
)

// QueryError is a search filter or cursor the store cannot use (400
// naming Field).
type QueryError struct {
	Field, Message string
}

func (e *QueryError) Error() string { return "store: " + e.Field + ": " + e.Message }

// NewMessage is a validated, normalized message to enqueue.
type NewMessage struct {
	ID      string              // from NewID
	App     string              // the resolved app name
	Request service.SendRequest // normalized: App set
	// RequestJSON is Request's JSON when the caller has it already (the API
	// computes it for the hash); the store encodes Request when nil.
	RequestJSON []byte
	// IdempotencyKey, when set, makes the enqueue idempotent: the same key
	// with the same RequestHash replays, with another hash conflicts.
	IdempotencyKey string
	RequestHash    string // hex SHA-256 of the canonical request
	AcceptedAt     time.Time
	// RequestID is the X-Request-Id of the accepting request; TraceParent
	// its W3C traceparent (empty when absent or invalid).
	RequestID, TraceParent string
}

// Outcome is what Enqueue did with one message.
type Outcome int

// The outcomes of an enqueue.
const (
	Created  Outcome = iota + 1 // stored and queued now
	Replayed                    // the idempotency key matched the same request: ID is the original message
	Conflict                    // the idempotency key was used with another request: nothing stored
)

// EnqueueResult is one message's outcome, in the order of the input.
type EnqueueResult struct {
	Outcome Outcome
	ID      string // the new message, or the original one on Replayed
}

// errorsIsAny reports whether err is any of targets.
func errorsIsAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
