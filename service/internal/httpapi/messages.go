package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/textproto"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/store"
)

// idempotencyHeader returns the Idempotency-Key header ("" when absent),
// or an error when it is present but not 1-255 printable ASCII characters
// or given more than once.
func idempotencyHeader(c *gin.Context) (string, *service.Error) {
	vals, ok := c.Request.Header[textproto.CanonicalMIMEHeaderKey(service.HeaderIdempotencyKey)]
	if !ok {
		return "", nil
	}
	if len(vals) != 1 || !validIdempotencyKey(vals[0]) {
		return "", invalid(service.HeaderIdempotencyKey, "%s must be given once, as 1-%d printable ASCII characters", service.HeaderIdempotencyKey, maxIdemKeyLen)
	}
	return vals[0], nil
}

// newMessage builds the store's message for a validated request of c.
func (a *api) newMessage(c *gin.Context, req service.SendRequest, key string, at time.Time) store.NewMessage {
	body, hash := canonical(req)
	return store.NewMessage{
		RequestID:      requestIDOf(c),
		TraceParent:    traceParentOf(c),
		ID:             a.newID(),
		App:            req.App,
		Request:        req,
		RequestJSON:    body,
		IdempotencyKey: key,
		RequestHash:    hash,
		AcceptedAt:     at,
	}
}

// enqueue calls the queue once for msgs. On failure it answers 503 (store
// unavailable) or 500 and returns false.
func (a *api) enqueue(c *gin.Context, msgs []store.NewMessage) ([]store.EnqueueResult, bool) {
	// Bounded: a Redis that does not answer (a dead host drops packets
	// rather than refusing) must turn into a prompt 503, not a hung client.
	ctx, cancel := context.WithTimeout(c.Request.Context(), a.storeTimeout)
	defer cancel()
	res, err := a.queue.Enqueue(ctx, msgs)
	switch {
	case errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) && c.Request.Context().Err() == nil:
		a.log.WarnContext(ctx, "enqueue: store unavailable", "request_id", requestIDOf(c), "messages", len(msgs), "err", err)
		a.unavailable(c)
		return nil, false
	case err != nil:
		a.log.ErrorContext(ctx, "enqueue failed", "request_id", requestIDOf(c), "messages", len(msgs), "err", err)
		a.abort(c, http.StatusInternalServerError, internalError())
		return nil, false
	case len(res) != len(msgs):
		a.log.ErrorContext(ctx, "enqueue returned the wrong number of results", "request_id", requestIDOf(c), "messages", len(msgs), "results", len(res))
		a.abort(c, http.StatusInternalServerError, internalError())
		return nil, false
	}
	for i, r := range res {
		if r.Outcome != store.Created && r.Outcome != store.Replayed && r.Outcome != store.Conflict {
			a.log.ErrorContext(ctx, "enqueue returned an unknown outcome", "request_id", requestIDOf(c), "index", i, "outcome", int(r.Outcome))
			a.abort(c, http.StatusInternalServerError, internalError())
			return nil, false
		}
	}
	return res, true
}

// count records an accepted or replayed message, and logs the acceptance
// (never the message's content) with the request's id, which every later
// log line about the message carries too.
func (a *api) count(c *gin.Context, req *service.SendRequest, r store.EnqueueResult) {
	switch r.Outcome {
	case store.Created:
		a.obs.accepted(req.App).Inc()
		a.log.InfoContext(c.Request.Context(), "message accepted", "request_id", requestIDOf(c), "id", r.ID, "app", req.App, "template_id", req.TemplateID)
	case store.Replayed:
		a.obs.replayed(req.App).Inc()
	}
}

// conflictError answers an idempotency key reused with another request.
func conflictError(field string) *service.Error {
	return &service.Error{
		Code:    service.CodeIdempotencyConflict,
		Message: "the idempotency key was already used with a different request",
		Field:   field,
	}
}

// send serves POST /v1/messages.
func (a *api) send(c *gin.Context) {
	key, e := idempotencyHeader(c)
	if e != nil {
		a.abort(c, http.StatusBadRequest, e)
		return
	}
	var req service.SendRequest
	if status, e := decodeBody(c, a.maxBody, &req, duplicateKey); e != nil {
		a.abort(c, status, e)
		return
	}
	if e := Validate(&req, a.apps); e != nil {
		a.abort(c, http.StatusBadRequest, e)
		return
	}
	res, ok := a.enqueue(c, []store.NewMessage{a.newMessage(c, req, key, a.now())})
	if !ok {
		return
	}
	r := res[0]
	a.count(c, &req, r)
	switch r.Outcome {
	case store.Conflict:
		a.abort(c, http.StatusConflict, conflictError(service.HeaderIdempotencyKey))
		return
	case store.Replayed:
		c.Header(service.HeaderReplayed, "true")
	}
	a.writeJSON(c, http.StatusAccepted, service.Accepted{ID: r.ID, Status: service.StatusQueued})
}

// batch serves POST /v1/messages/batch: each item is validated on its
// own, the valid ones go to the queue in one call, and the answer lists
// every item's outcome in request order (202 if all were accepted or
// replayed, 207 when some were, 400 (409 when all conflicted) when none
// was). A queue failure fails the whole request.
func (a *api) batch(c *gin.Context) {
	if _, ok := c.Request.Header[textproto.CanonicalMIMEHeaderKey(service.HeaderIdempotencyKey)]; ok {
		a.abort(c, http.StatusBadRequest, invalid(service.HeaderIdempotencyKey,
			"%s is not accepted on a batch; give each message its own idempotency_key", service.HeaderIdempotencyKey))
		return
	}
	// The items are decoded one by one, so that one malformed item (a
	// number for touser, an unknown field) is that item's 400, not the
	// whole batch's.
	var req struct {
		Messages []json.RawMessage `json:"messages"`
	}
	if status, e := decodeBody(c, MaxBatchBody, &req, duplicateTopKey); e != nil {
		a.abort(c, status, e)
		return
	}
	if n := len(req.Messages); n < 1 || n > service.MaxBatch {
		a.abort(c, http.StatusBadRequest, invalid("messages", "messages must hold 1-%d messages, not %d", service.MaxBatch, n))
		return
	}

	resp := service.BatchResponse{Results: make([]service.BatchResult, len(req.Messages))}
	msgs := make([]store.NewMessage, 0, len(req.Messages))
	index := make([]int, 0, len(req.Messages)) // msgs[j] is item index[j]
	now := a.now()
	for i, raw := range req.Messages {
		prefix := "messages[" + strconv.Itoa(i) + "]"
		resp.Results[i].Index = i
		var item service.BatchItem
		e := decodeItem(raw, &item)
		if e == nil {
			e = Validate(&item.SendRequest, a.apps)
		}
		if e == nil && item.IdempotencyKey != "" {
			e = checkText("idempotency_key", item.IdempotencyKey)
			if e == nil && !validIdempotencyKey(item.IdempotencyKey) {
				e = invalid("idempotency_key", "idempotency_key must be 1-%d printable ASCII characters", maxIdemKeyLen)
			}
		}
		if e != nil {
			e.Field = prefixField(prefix, e.Field)
			resp.Results[i].StatusCode = http.StatusBadRequest
			resp.Results[i].Error = e
			resp.Rejected++
			continue
		}
		msgs = append(msgs, a.newMessage(c, item.SendRequest, item.IdempotencyKey, now))
		index = append(index, i)
	}

	if len(msgs) > 0 {
		res, ok := a.enqueue(c, msgs)
		if !ok {
			return
		}
		for j, r := range res {
			i := index[j]
			a.count(c, &msgs[j].Request, r)
			if r.Outcome == store.Conflict {
				resp.Results[i].StatusCode = http.StatusConflict
				resp.Results[i].Error = conflictError(prefixField("messages["+strconv.Itoa(i)+"]", "idempotency_key"))
				resp.Rejected++
				continue
			}
			resp.Results[i].StatusCode = http.StatusAccepted
			resp.Results[i].ID = r.ID
			resp.Results[i].Status = service.StatusQueued
			resp.Results[i].Replayed = r.Outcome == store.Replayed
			resp.Accepted++
		}
	}

	status := http.StatusAccepted
	switch {
	case resp.Accepted == 0:
		status, resp.Error = allRejected(resp.Results)
	case resp.Rejected > 0:
		status = http.StatusMultiStatus
	}
	a.writeJSON(c, status, resp)
}

// allRejected returns the status and error of a batch none of whose items
// was accepted: 409 when every item reused an idempotency key with
// another request, else 400.
func allRejected(results []service.BatchResult) (int, *service.Error) {
	for _, r := range results {
		if r.StatusCode != http.StatusConflict {
			return http.StatusBadRequest, invalid("messages", "every message of the batch was rejected; see results")
		}
	}
	e := conflictError("messages")
	e.Message = "every message of the batch reused an idempotency key with a different request; see results"
	return http.StatusConflict, e
}

// decodeItem decodes one batch item strictly (no unknown fields, no
// duplicate keys).
func decodeItem(raw json.RawMessage, item *service.BatchItem) *service.Error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(item); err != nil {
		_, e := decodeError(err, MaxBatchBody)
		return e
	}
	return duplicateKey(raw)
}

// prefixField puts a batch item's prefix before a field path.
func prefixField(prefix, field string) string {
	if field == "" {
		return prefix
	}
	return prefix + "." + field
}

// get serves GET /v1/messages/:id.
func (a *api) get(c *gin.Context) {
	id := c.Param("id")
	notFound := &service.Error{Code: service.CodeNotFound, Message: "no message with that id"}
	if !validMessageID(id) {
		a.abort(c, http.StatusNotFound, notFound)
		return
	}
	ctx := c.Request.Context()
	m, err := a.queue.Get(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		a.abort(c, http.StatusNotFound, notFound)
	case errors.Is(err, store.ErrUnavailable):
		a.log.WarnContext(ctx, "get: store unavailable", "request_id", requestIDOf(c), "err", err)
		a.unavailable(c)
	case err != nil:
		a.log.ErrorContext(ctx, "get failed", "request_id", requestIDOf(c), "err", err)
		a.abort(c, http.StatusInternalServerError, internalError())
	case m == nil:
		a.log.ErrorContext(ctx, "get returned no message and no error", "request_id", requestIDOf(c))
		a.abort(c, http.StatusInternalServerError, internalError())
	default:
		a.writeJSON(c, http.StatusOK, m)
	}
}
