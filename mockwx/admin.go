package mockwx

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// AdminError is the body of every admin API error:
// {"error":{"code":"...","message":"...","field":"..."}}.
type AdminError struct {
	Error AdminErrorBody `json:"error"`
}

// AdminErrorBody describes one admin API error.
type AdminErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// Stats is the body of GET /_mock/stats. Counters are exact and count
// since start or the last reset.
type Stats struct {
	TokenCalls       int64            `json:"token_calls"`
	StableTokenCalls int64            `json:"stable_token_calls"`
	SendCalls        int64            `json:"send_calls"`
	Delivered        int64            `json:"delivered"`    // sends accepted and not deduplicated
	Deduplicated     int64            `json:"deduplicated"` // sends answered from the client_msg_id window
	ByErrcode        map[string]int64 `json:"by_errcode"`   // every WeChat answer, all endpoints
	FaultsFired      int64            `json:"faults_fired"` // calls on which at least one rule fired
	Injected         map[string]int64 `json:"injected"`     // by kind: errcode, http_status, reset, timeout, malformed, empty
	Callbacks        CallbackStats    `json:"callbacks"`    // TEMPLATESENDJOBFINISH pushes
	EventPushes      CallbackStats    `json:"event_pushes"` // simulated users' events and messages
	Ledger           LedgerStats      `json:"ledger"`
}

// LedgerStats describes the ledger's fill.
type LedgerStats struct {
	Entries     int    `json:"entries"`
	Total       uint64 `json:"total"`
	Evicted     uint64 `json:"evicted"`
	MemoryBytes int64  `json:"memory_bytes"`
}

// ExpireRequest is the body of POST /_mock/tokens/expire.
type ExpireRequest struct {
	AppID string `json:"appid,omitempty"`
}

// ExpireResponse answers POST /_mock/tokens/expire.
type ExpireResponse struct {
	Expired int `json:"expired"`
}

// AddFaultResponse answers POST /_mock/faults.
type AddFaultResponse struct {
	ID string `json:"id"`
}

// Stats returns the mock's counters.
func (s *Server) Stats() Stats {
	st := Stats{
		TokenCalls:       s.stats.tokenCalls.Load(),
		StableTokenCalls: s.stats.stableCalls.Load(),
		SendCalls:        s.stats.sendCalls.Load(),
		Delivered:        s.stats.delivered.Load(),
		Deduplicated:     s.stats.deduplicated.Load(),
		FaultsFired:      s.stats.faultsFired.Load(),
		ByErrcode:        map[string]int64{},
		Injected:         map[string]int64{},
		Callbacks:        s.pusher.Stats(),
		EventPushes:      s.events.Stats(),
		Ledger: LedgerStats{
			Entries: s.ledger.Len(), Total: s.ledger.Total(), Evicted: s.ledger.Evicted(), MemoryBytes: s.ledger.MemoryBytes(),
		},
	}
	s.stats.mu.Lock()
	for c, n := range s.stats.byErrcode {
		st.ByErrcode[strconv.Itoa(c)] = n
	}
	for k, n := range s.stats.injected {
		st.Injected[k] = n
	}
	s.stats.mu.Unlock()
	return st
}

// Faults returns the fault engine, for tests that program the mock in process.
func (s *Server) Faults() *Engine { return s.faults }

// Ledger returns the send ledger.
func (s *Server) Ledger() *Ledger { return s.ledger }

func (s *Server) adminAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.opts.AdminToken != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.opts.AdminToken)) != 1 {
				adminError(w, http.StatusUnauthorized, "unauthorized", "the admin API needs Authorization: Bearer <MOCKWX_ADMIN_TOKEN>", "")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func adminJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"encode failed"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func adminError(w http.ResponseWriter, status int, code, msg, field string) {
	adminJSON(w, status, AdminError{Error: AdminErrorBody{Code: code, Message: msg, Field: field}})
}

func (s *Server) adminReset(w http.ResponseWriter, r *http.Request) {
	s.Reset()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) adminApps(w http.ResponseWriter, r *http.Request) {
	adminJSON(w, http.StatusOK, s.Apps())
}

func (s *Server) adminStats(w http.ResponseWriter, r *http.Request) {
	adminJSON(w, http.StatusOK, s.Stats())
}

func (s *Server) adminMessages(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var after uint64
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			adminError(w, http.StatusBadRequest, "invalid_request", "after must be a non-negative integer sequence number", "after")
			return
		}
		after = n
	}
	limit := 1000
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			adminError(w, http.StatusBadRequest, "invalid_request", "limit must be an integer from 1 to 10000", "limit")
			return
		}
		limit = n
	}
	adminJSON(w, http.StatusOK, s.ledger.Page(after, limit))
}

func (s *Server) adminAddFault(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		adminError(w, http.StatusBadRequest, "invalid_request", "cannot read body", "")
		return
	}
	rule, err := ParseRule(body)
	if err != nil {
		adminError(w, http.StatusBadRequest, "invalid_rule", err.Error(), ruleErrorField(err))
		return
	}
	id, err := s.faults.Add(rule)
	if err != nil {
		adminError(w, http.StatusBadRequest, "invalid_rule", err.Error(), ruleErrorField(err))
		return
	}
	adminJSON(w, http.StatusCreated, AddFaultResponse{ID: id})
}

// ruleErrorField names the field a rule error starts with ("latency.fixed_ms:
// ..." -> "latency.fixed_ms"), or "" when it names none.
func ruleErrorField(err error) string {
	msg := err.Error()
	field, _, ok := strings.Cut(msg, ":")
	if !ok || strings.ContainsAny(field, " \"") {
		return ""
	}
	return field
}

func (s *Server) adminListFaults(w http.ResponseWriter, r *http.Request) {
	adminJSON(w, http.StatusOK, s.faults.List())
}

func (s *Server) adminClearFaults(w http.ResponseWriter, r *http.Request) {
	s.faults.Clear()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) adminDeleteFault(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !s.faults.Remove(id) {
		adminError(w, http.StatusNotFound, "not_found", "no fault rule "+strconv.Quote(id), "id")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) adminExpireTokens(w http.ResponseWriter, r *http.Request) {
	var req ExpireRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err == nil && len(strings.TrimSpace(string(body))) > 0 {
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		err = dec.Decode(&req)
	}
	if err != nil {
		adminError(w, http.StatusBadRequest, "invalid_request", "body must be {\"appid\": \"...\"} or empty: "+err.Error(), "")
		return
	}
	n, err := s.ExpireTokens(req.AppID)
	if errors.Is(err, errUnknownApp) {
		adminError(w, http.StatusNotFound, "not_found", "no app "+strconv.Quote(req.AppID), "appid")
		return
	}
	adminJSON(w, http.StatusOK, ExpireResponse{Expired: n})
}
