package loadtest

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"

	"github.com/wxpush/wxpush/scenarios"
)

// Summary is summary.json: the verdict and the figures of one run.
// Expectations are expressions over its JSON field names.
type Summary struct {
	Scenario     string              `json:"scenario"`
	Description  string              `json:"description"`
	Passed       bool                `json:"passed"`
	Expectations []ExpectationResult `json:"expectations"`
	Run          RunInfo             `json:"run"`
	Accept       Accept              `json:"accept"`
	Delivery     Delivery            `json:"delivery"`
	Events       Events              `json:"events"`
	Mock         MockFigures         `json:"mock"`
	Service      ServiceFigures      `json:"service"`
	Generator    Generator           `json:"generator"`
}

// ExpectationResult is one expectation and what the run measured.
type ExpectationResult struct {
	Name   string `json:"name"`
	Expr   string `json:"expr"`
	Value  any    `json:"value"` // the left side of its comparison, as measured
	Passed bool   `json:"passed"`
	Error  string `json:"error,omitempty"`
}

// RunInfo describes the run itself.
type RunInfo struct {
	Started         time.Time       `json:"started"`
	Finished        time.Time       `json:"finished"`
	DurationSeconds float64         `json:"duration_seconds"` // attack
	Mode            string          `json:"mode"`             // embedded or remote
	Instances       int             `json:"instances"`
	Redis           string          `json:"redis"` // embedded, url
	Seed            int64           `json:"seed"`
	Version         string          `json:"version"`
	GoVersion       string          `json:"go_version"`
	Cores           int             `json:"cores"`
	Timeline        []TimelineEvent `json:"timeline"`
	TimelineErrors  int             `json:"timeline_errors"`
	Warnings        []string        `json:"warnings"`
	// Shard is the run's place in a sharded run (wxload run --shard I/N,
	// wxload merge); its count is 0 for a run that is not sharded.
	Shard ShardInfo `json:"shard"`
}

// ShardInfo identifies one shard of a sharded run, or in a merged
// summary the run its shards made up.
type ShardInfo struct {
	// RunID is shared by every shard of one run (--run-id).
	RunID string `json:"run_id"`
	// Index is the shard's index, from 0; -1 in a merged summary.
	Index int `json:"index"`
	// Count is the number of shards (N); 0: the run is not sharded.
	Count int `json:"count"`
	// Marker is the tag of the shard's messages: each one's marker is
	// Marker, '-' and a number (empty in a merged summary).
	Marker string `json:"marker,omitempty"`
	// LedgerFrom is the mock ledger's last seq before the shard's load:
	// its messages come after it.
	LedgerFrom uint64 `json:"ledger_from"`
	// Merged lists the shards a merged summary combines, by index.
	Merged []MergedShard `json:"merged,omitempty"`
	// LedgerSource is where a merged summary's accounting read the
	// mock's ledger: "mock" (the live mock, wxload merge --mock) or
	// "shards" (the shards' ledger.jsonl extracts).
	LedgerSource string `json:"ledger_source,omitempty"`
}

// MergedShard is one shard of a merged summary, as its own summary has it.
type MergedShard struct {
	Index    int       `json:"index"`
	Dir      string    `json:"dir"`
	Marker   string    `json:"marker"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Requests int       `json:"requests"`
	Accepted int       `json:"accepted"`
	Lost     int       `json:"lost"`
	// Passed is the shard's verdict on its own share (figures such as
	// accept.requests are 1/N of the run's there).
	Passed    bool `json:"passed"`
	Saturated bool `json:"saturated"`
}

// TimelineEvent is one timeline action as it happened.
type TimelineEvent struct {
	AtSeconds  float64 `json:"at_seconds"` // since the start of the load
	EndSeconds float64 `json:"end_seconds,omitempty"`
	Action     string  `json:"action"`
	Detail     string  `json:"detail"`
	Error      string  `json:"error,omitempty"`
}

// Percentiles are latency percentiles in milliseconds.
type Percentiles struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// Accept is what the API answered to the generator.
type Accept struct {
	Requests          int            `json:"requests"`   // HTTP requests made
	Messages          int            `json:"messages"`   // messages in them (batches count each)
	Rate              float64        `json:"rate"`       // requests sent per second
	Throughput        float64        `json:"throughput"` // successful requests per second, tail included
	SuccessRatio      float64        `json:"success_ratio"`
	LatencyMS         Percentiles    `json:"latency_ms"`
	StatusCodes       map[string]int `json:"status_codes"`
	Errors            int            `json:"errors"` // transport errors and non-2xx answers
	ErrorKinds        map[string]int `json:"error_kinds"`
	Replayed          int            `json:"replayed"`           // answers with Idempotent-Replayed
	DuplicateRequests int            `json:"duplicate_requests"` // requests that repeated an earlier key
	BatchRequests     int            `json:"batch_requests"`
	ItemErrors        int            `json:"item_errors"` // batch items refused
}

// Events accounts for the pushes of the simulated users (load.users): each
// push is exactly one of acked, replied, reply_invalid, failed and pending
// at the mock; each acknowledged one is forwarded once, forwarded twice
// (more than one delivery id) or lost at wxload's event webhook receiver
// (embedded stack only).
type Events struct {
	// Enabled: the scenario has load.users.
	Enabled bool `json:"enabled"`
	// EventTypeFigures are the totals over every type.
	EventTypeFigures
	// Skipped counts due events for which no user was free (one push per
	// user every 2 s); PushErrors events the mock did not take.
	Skipped        int    `json:"skipped"`
	PushErrors     int    `json:"push_errors"`
	FirstPushError string `json:"first_push_error,omitempty"`
	// ByType breaks the figures down by event type.
	ByType map[string]*EventTypeFigures `json:"by_type"`
	// Webhook is what wxload's receiver saw; nil in remote mode.
	Webhook *EventWebhook `json:"webhook"`
	// Unfollowed is the users of the unfollow wave (per app).
	Unfollowed int `json:"unfollowed"`
	// SendsToUnfollowed counts sends that reached the mock for a user of
	// the wave after the service had acknowledged the user's unsubscribe
	// (and before any re-subscribe): the follower check lets none through.
	SendsToUnfollowed int `json:"sends_to_unfollowed"`
	// SendsBeforeServiceKnew counts sends to such a user between the
	// unsubscribe and its acknowledgement (WeChat answers them 43004);
	// SendsAfterRefollow the sends after the re-subscribe.
	SendsBeforeServiceKnew int `json:"sends_before_service_knew"`
	SendsAfterRefollow     int `json:"sends_after_refollow"`
}

// EventTypeFigures are the Events figures of one event type (or of all).
type EventTypeFigures struct {
	Pushed int `json:"pushed"`
	// Acked: answered success or empty; Replied: a valid passive reply;
	// ReplyInvalid: an answer WeChat would show the user as an error;
	// Failed: no answer after WeChat's tries; Pending: none yet.
	Acked        int `json:"acked"`
	Replied      int `json:"replied"`
	ReplyInvalid int `json:"reply_invalid"`
	Failed       int `json:"failed"`
	Pending      int `json:"pending"`
	// RepliesWrong counts answered pushes whose reply is not the one the
	// app's rules call for (missing, unexpected or another text).
	RepliesWrong int `json:"replies_wrong"`
	// Retried counts pushes the mock had to send more than once.
	Retried int `json:"retried"`
	// ForwardedOnce, ForwardedTwice and Lost: acknowledged pushes that
	// reached the event webhook with one delivery id, with more than one,
	// or never.
	ForwardedOnce  int `json:"forwarded_once"`
	ForwardedTwice int `json:"forwarded_twice"`
	Lost           int `json:"lost"`
}

// add adds o's figures to f.
func (f *EventTypeFigures) add(o EventTypeFigures) {
	f.Pushed += o.Pushed
	f.Acked += o.Acked
	f.Replied += o.Replied
	f.ReplyInvalid += o.ReplyInvalid
	f.Failed += o.Failed
	f.Pending += o.Pending
	f.RepliesWrong += o.RepliesWrong
	f.Retried += o.Retried
	f.ForwardedOnce += o.ForwardedOnce
	f.ForwardedTwice += o.ForwardedTwice
	f.Lost += o.Lost
}

// EventWebhook is what wxload's event webhook receiver saw.
type EventWebhook struct {
	// Receipts is every request; DeliveryIDs the distinct delivery ids;
	// Redelivered the receipts of an id already seen (a receiver that
	// honours the id drops them).
	Receipts    int `json:"receipts"`
	DeliveryIDs int `json:"delivery_ids"`
	Redelivered int `json:"redelivered"`
	// BadSignatures counts requests whose signature did not verify.
	BadSignatures int `json:"bad_signatures"`
	// OutOfOrder counts pushes received after a later one of the same user
	// (by CreateTime).
	OutOfOrder int `json:"out_of_order"`
}

// Delivery accounts for every accepted message after the drain. Every
// accepted message is exactly one of delivered, failed and lost.
type Delivery struct {
	Accepted       int            `json:"accepted"`  // distinct messages the API acknowledged
	Delivered      int            `json:"delivered"` // WeChat accepted the send (the mock's ledger)
	Failed         int            `json:"failed"`    // the service reports it failed
	FailedByReason map[string]int `json:"failed_by_reason"`
	Duplicates     int            `json:"duplicates"` // messages WeChat accepted more than once
	Lost           int            `json:"lost"`       // neither delivered nor failed after the drain
	Confirmed      int            `json:"confirmed"`  // status delivered: the delivery report was applied
	StatusChecked  int            `json:"status_checked"`
	Unattributed   int            `json:"unattributed"` // ledger entries of this run whose data was evicted
	// E2ELatencyMS runs from each delivered message's scheduled send time
	// (when its request was due to leave the generator) to the mock's
	// receipt of its first delivery (the ledger's received_at).
	E2ELatencyMS Percentiles `json:"e2e_latency_ms"`
	// ConfirmedLatencyMS runs from the same send time to the service
	// applying WeChat's delivery report: the message's delivered_at (or
	// updated_at when the report said failed), read from GET
	// /v1/messages/{id} after the drain, at millisecond precision.
	ConfirmedLatencyMS Percentiles `json:"confirmed_latency_ms"`
	// ReceiptsBeforeSend counts receipts and confirmations stamped before
	// their send (a remote mock or service whose clock is behind this
	// machine's): left out of the latencies, not counted as zero.
	ReceiptsBeforeSend int                `json:"receipts_before_send"`
	DrainSeconds       float64            `json:"drain_seconds"`
	Drained            bool               `json:"drained"`
	Apps               map[string]AppFlow `json:"apps"`
}

// AppFlow is the accounting of one app.
type AppFlow struct {
	Accepted  int `json:"accepted"`
	Delivered int `json:"delivered"`
	Failed    int `json:"failed"`
	Lost      int `json:"lost"`
	// MaxPerSecond is the most first deliveries WeChat received for the
	// app within any one-second window: what a rate limit is judged by.
	MaxPerSecond int `json:"max_per_second"`
}

// MockFigures are the mock's counters over the run (end minus start).
type MockFigures struct {
	TokenCalls       int64 `json:"token_calls"`
	StableTokenCalls int64 `json:"stable_token_calls"`
	// SendCalls counts template sends (token calls are not sends).
	SendCalls    int64 `json:"send_calls"`
	Delivered    int64 `json:"delivered"`
	Deduplicated int64 `json:"deduplicated"`
	// ByErrcode counts the mock's answers on every endpoint, the token
	// calls' included: a run of 500 sends and one token call has 501
	// answers with errcode 0.
	ByErrcode map[string]int64 `json:"by_errcode"`
	// SendsByErrcode counts the answers to this run's sends, from the
	// mock's ledger (only the run's messages, by their marker; a send
	// refused for its access token, 40001 or 42001, is not in the ledger
	// and counts only in ByErrcode).
	SendsByErrcode  map[string]int64 `json:"sends_by_errcode"`
	FaultsFired     int64            `json:"faults_fired"`
	Injected        map[string]int64 `json:"injected"`
	CallbacksSent   int64            `json:"callbacks_sent"`
	CallbacksAcked  int64            `json:"callbacks_acked"`
	CallbacksFailed int64            `json:"callbacks_failed"`
}

// ServiceFigures are the instances' counters over the run, from their
// /metrics: for each instance, the increase from the scrape before the
// load (or from zero for an instance started during the run) to its last
// scrape, summed. An instance that is killed keeps its last scrape (one is
// taken just before a kill), and a restarted one counts from zero again,
// so no figure goes down.
type ServiceFigures struct {
	Accepted       float64            `json:"accepted"`
	Replayed       float64            `json:"replayed"`
	Sent           float64            `json:"sent"`
	Failed         float64            `json:"failed"`
	Retries        float64            `json:"retries"`
	Reclaimed      float64            `json:"reclaimed"`
	TokenRefreshes float64            `json:"token_refreshes"`
	RedisErrors    float64            `json:"redis_errors"`
	AttemptsByCode map[string]float64 `json:"attempts_by_errcode"`
	QueueDepthMax  float64            `json:"queue_depth_max"`
	ScrapeFailures int                `json:"scrape_failures"`
	// InstancesSeenUp counts the instances (by URL) that answered a scrape
	// during the run; InstanceRestarts the times one came back with its
	// counters from zero (after a kill, or a restart wxload did not see).
	InstancesSeenUp  int `json:"instances_seen_up"`
	InstanceRestarts int `json:"instance_restarts"`
}

// Generator tells whether the load generator, not the service, limited
// the run (Saturated), and whether the machine was busy with something
// else (MachineBusy): the first means the run did not measure the
// service; the second that its latencies include the machine's waits.
type Generator struct {
	TargetRate    float64     `json:"target_rate"`   // mean offered rate
	PeakRate      float64     `json:"peak_rate"`     // highest offered rate
	AchievedRate  float64     `json:"achieved_rate"` // requests sent per second
	SelfCheckRate float64     `json:"self_check_rate"`
	LagMS         Percentiles `json:"lag_ms"` // scheduling lag: sent minus due
	// Saturated: the generator could not keep up (requests left late and
	// fewer were sent than the target); Reason says how.
	Saturated bool   `json:"saturated"`
	Reason    string `json:"reason,omitempty"`
	// UsualSelfCheckRate is the median self-check rate of this machine's
	// earlier runs (0: no history); SelfCheckRatio is this run's
	// self-check rate over it (0 when unknown).
	UsualSelfCheckRate float64 `json:"usual_self_check_rate"`
	SelfCheckRatio     float64 `json:"self_check_ratio"`
	// ProbeMS is the latency of a trivial request to a loopback server in
	// wxload's own process, made 20 times a second while the load runs:
	// what the machine alone adds to any latency at that moment (about a
	// tenth of a millisecond on an idle machine).
	ProbeMS Percentiles `json:"probe_ms"`
	// MachineBusy: the machine was busy with more than this run (the
	// self-check far below its usual rate, or requests late although the
	// rate was met); MachineReason says how. It does not mean the run
	// failed to measure the service, only that latencies include waits
	// for the CPU.
	MachineBusy   bool   `json:"machine_busy"`
	MachineReason string `json:"machine_reason,omitempty"`
}

// env is the summary as expressions see it: its JSON form.
func (s *Summary) env() (map[string]any, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	err = json.Unmarshal(b, &m)
	return m, err
}

// Evaluate checks every expectation of sc against the summary, fills in
// Expectations and Passed.
func (s *Summary) Evaluate(expect []scenarios.Expectation) {
	env, err := s.env()
	s.Expectations = nil
	s.Passed = true
	for _, e := range expect {
		r := ExpectationResult{Name: e.Label(), Expr: e.Expr}
		if err != nil {
			r.Error = err.Error()
		} else {
			r.Passed, r.Value, r.Error = evaluate(e.Expr, env)
		}
		if !r.Passed {
			s.Passed = false
		}
		s.Expectations = append(s.Expectations, r)
	}
}

func evaluate(src string, env map[string]any) (passed bool, value any, errText string) {
	prog, err := expr.Compile(src, expr.Env(env), expr.AsBool())
	if err != nil {
		return false, nil, firstLine(err.Error())
	}
	out, err := expr.Run(prog, env)
	if err != nil {
		return false, nil, firstLine(err.Error())
	}
	if p := measured(src); p != "" {
		if v, err := expr.Eval(p, env); err == nil {
			value = v
		}
	}
	return out.(bool), value, ""
}

// measured is the part of an expectation reported as its measured value:
// the left side of its (first) comparison, e.g. "a + b" for "a + b <= 30",
// else the first field path it reads.
func measured(src string) string {
	tree, err := parser.Parse(src)
	if err != nil {
		return firstPath(src)
	}
	n := tree.Node
	for {
		b, ok := n.(*ast.BinaryNode)
		if !ok {
			break
		}
		switch b.Operator {
		case "==", "!=", "<", "<=", ">", ">=":
			return b.Left.String()
		case "&&", "||", "and", "or":
			n = b.Left
			continue
		}
		break
	}
	return firstPath(src)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

var pathRE = regexp.MustCompile(`[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*|\["[^"]*"\])+`)

// firstPath is the first field path the expression reads, reported as the
// expectation's measured value.
func firstPath(src string) string { return pathRE.FindString(src) }

// CheckExpectations reports expressions that do not compile or read
// fields summary.json does not have (a typo would otherwise make an
// expectation silently compare nil).
func CheckExpectations(expect []scenarios.Expectation) error {
	zero := &Summary{}
	zero.zeroMaps()
	env, err := zero.env()
	if err != nil {
		return err
	}
	var problems []string
	for i, e := range expect {
		tree, err := parser.Parse(e.Expr)
		if err != nil {
			problems = append(problems, fmt.Sprintf("expect[%d] %q: %s", i, e.Expr, firstLine(err.Error())))
			continue
		}
		v := &pathVisitor{env: env}
		ast.Walk(&tree.Node, v)
		for _, bad := range v.bad {
			problems = append(problems, fmt.Sprintf("expect[%d] %q: summary.json has no field %s", i, e.Expr, bad))
		}
		prog, err := expr.Compile(e.Expr, expr.Env(env), expr.AsBool())
		if err != nil {
			problems = append(problems, fmt.Sprintf("expect[%d] %q: %s", i, e.Expr, firstLine(err.Error())))
			continue
		}
		// Field types are not known to the compiler (the env is JSON), so
		// try the expression on the zero summary: a value that is not a
		// boolean means it is not a condition. An error proves nothing
		// (a map key that exists only after a run).
		out, err := expr.Run(prog, env)
		_, isBool := out.(bool)
		if err == nil && !isBool || err != nil && strings.Contains(err.Error(), "bool(") {
			problems = append(problems, fmt.Sprintf("expect[%d] %q: not a condition: it must compare, e.g. %q", i, e.Expr, e.Expr+" == 0"))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "\n"))
	}
	return nil
}

// pathVisitor collects member paths (a.b.c) that do not exist in the zero
// summary. Keys under a map-valued field (by_errcode, apps, ...) are free.
type pathVisitor struct {
	env map[string]any
	bad []string
}

func (v *pathVisitor) Visit(node *ast.Node) {
	m, ok := (*node).(*ast.MemberNode)
	if !ok {
		if id, ok := (*node).(*ast.IdentifierNode); ok {
			if _, known := v.env[id.Value]; !known && !builtin(id.Value) {
				v.bad = append(v.bad, id.Value)
			}
		}
		return
	}
	parts, ok := memberPath(m)
	if !ok {
		return
	}
	var cur any = v.env
	for i, p := range parts {
		obj, isMap := cur.(map[string]any)
		if !isMap {
			return // a value below a dynamic key, or a non-object: nothing to check
		}
		next, known := obj[p]
		if !known {
			if len(obj) == 0 { // a map with dynamic keys
				return
			}
			v.bad = append(v.bad, strings.Join(parts[:i+1], "."))
			return
		}
		cur = next
	}
}

func builtin(name string) bool {
	switch name {
	case "true", "false", "nil", "len", "abs", "max", "min", "all", "any", "none", "one", "filter", "map", "count", "sum":
		return true
	}
	return false
}

func memberPath(m *ast.MemberNode) ([]string, bool) {
	var parts []string
	var n ast.Node = m
	for {
		switch x := n.(type) {
		case *ast.MemberNode:
			s, ok := x.Property.(*ast.StringNode)
			if !ok {
				return nil, false
			}
			parts = append([]string{s.Value}, parts...)
			n = x.Node
		case *ast.IdentifierNode:
			return append([]string{x.Value}, parts...), true
		default:
			return nil, false
		}
	}
}

// zeroMaps makes the summary's maps non-nil so that summary.json shows
// them as {} and expressions can index them.
func (s *Summary) zeroMaps() {
	for _, p := range []any{&s.Accept.StatusCodes, &s.Accept.ErrorKinds, &s.Delivery.FailedByReason, &s.Events.ByType,
		&s.Delivery.Apps, &s.Mock.ByErrcode, &s.Mock.SendsByErrcode, &s.Mock.Injected, &s.Service.AttemptsByCode} {
		rv := reflect.ValueOf(p).Elem()
		if rv.IsNil() {
			rv.Set(reflect.MakeMap(rv.Type()))
		}
	}
	if s.Expectations == nil {
		s.Expectations = []ExpectationResult{}
	}
	if s.Run.Timeline == nil {
		s.Run.Timeline = []TimelineEvent{}
	}
	if s.Run.Warnings == nil {
		s.Run.Warnings = []string{}
	}
}
