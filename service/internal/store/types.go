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
)

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
