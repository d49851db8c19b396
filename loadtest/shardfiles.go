package loadtest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/service"
)

// The files a shard's run directory adds, for wxload merge.
const (
	// HistogramsFile holds the run's latency histograms (every run).
	HistogramsFile = "histograms.json"
	// MessagesFile lists the messages the API accepted, one JSON object
	// a line (MessageRecord): what wxload merge accounts for.
	MessagesFile = "messages.jsonl"
	// ShardFile holds the mock's stats before and after the shard's run.
	ShardFile = "shard.json"
)

// checkShard refuses a shard that cannot run, before anything starts.
func checkShard(sh Shard, remote bool) error {
	if !sh.sharded() {
		if sh.RunID != "" {
			return fmt.Errorf("%w: --run-id names a sharded run: it goes with --shard I/N", ErrUsage)
		}
		return nil
	}
	if sh.Count < 1 || sh.Count > maxShards || sh.Index < 0 || sh.Index >= sh.Count {
		return fmt.Errorf("%w: shard %d/%d: want I/N with 0 <= I < N <= %d", ErrUsage, sh.Index, sh.Count, maxShards)
	}
	if !remote {
		return fmt.Errorf("%w: --shard runs a share of the load against a running deployment (--service URL --mock URL --api-key K); the embedded stack belongs to one process", ErrUsage)
	}
	return CheckRunID(sh.RunID)
}

// runHistograms are a run's latency histograms, in microseconds: what
// wxload merge combines (bucket by bucket, never by averaging
// percentiles).
type runHistograms struct {
	Lag, Probe, Accept, E2E, Confirmed *hdrhistogram.Histogram
}

// histogramsFile is histograms.json: each histogram in HdrHistogram's V2
// compressed, base64 encoding (readable by any HdrHistogram library),
// in microseconds.
type histogramsFile struct {
	Unit      string `json:"unit"`
	Lag       string `json:"lag,omitempty"`
	Probe     string `json:"probe,omitempty"`
	Accept    string `json:"accept,omitempty"`
	E2E       string `json:"e2e,omitempty"`
	Confirmed string `json:"confirmed,omitempty"`
}

func encodeHist(h *hdrhistogram.Histogram) (string, error) {
	if h == nil {
		return "", nil
	}
	b, err := h.EncodeV2()
	return string(b), err
}

func decodeHist(s string) (*hdrhistogram.Histogram, error) {
	if s == "" {
		return nil, nil
	}
	return hdrhistogram.Decode([]byte(s))
}

func writeHistograms(path string, h runHistograms) error {
	var f histogramsFile
	f.Unit = "us"
	var err error
	for _, p := range []struct {
		dst *string
		h   *hdrhistogram.Histogram
	}{{&f.Lag, h.Lag}, {&f.Probe, h.Probe}, {&f.Accept, h.Accept}, {&f.E2E, h.E2E}, {&f.Confirmed, h.Confirmed}} {
		if *p.dst, err = encodeHist(p.h); err != nil {
			return fmt.Errorf("%s: %w", HistogramsFile, err)
		}
	}
	return writeJSON(path, &f)
}

// readHistograms reads a run directory's histograms.json; a histogram
// the file does not hold is nil.
func readHistograms(dir string) (runHistograms, error) {
	var h runHistograms
	b, err := os.ReadFile(filepath.Join(dir, HistogramsFile))
	if err != nil {
		return h, err
	}
	var f histogramsFile
	if err := json.Unmarshal(b, &f); err != nil {
		return h, fmt.Errorf("%s: %w", filepath.Join(dir, HistogramsFile), err)
	}
	if f.Unit != "us" {
		return h, fmt.Errorf("%s: unit %q, want us", filepath.Join(dir, HistogramsFile), f.Unit)
	}
	for _, p := range []struct {
		name string
		src  string
		dst  **hdrhistogram.Histogram
	}{{"lag", f.Lag, &h.Lag}, {"probe", f.Probe, &h.Probe}, {"accept", f.Accept, &h.Accept}, {"e2e", f.E2E, &h.E2E}, {"confirmed", f.Confirmed, &h.Confirmed}} {
		if *p.dst, err = decodeHist(p.src); err != nil {
			return h, fmt.Errorf("%s: %s: %w", filepath.Join(dir, HistogramsFile), p.name, err)
		}
	}
	return h, nil
}

// mergeHists adds every histogram of hs into one of newHist's range.
// Values beyond it (none: the runs record into the same range) would be
// counted in dropped.
func mergeHists(hs ...*hdrhistogram.Histogram) (merged *hdrhistogram.Histogram, dropped int64) {
	merged = newHist()
	for _, h := range hs {
		if h != nil {
			dropped += merged.Merge(h)
		}
	}
	return merged, dropped
}

// MessageRecord is one line of messages.jsonl: a message the API accepted
// in a shard, with what the shard learnt of its status.
type MessageRecord struct {
	Marker string `json:"marker"`
	ID     string `json:"id"`
	App    string `json:"app"`
	ToUser string `json:"touser"`
	// SentAt is when its first request was due to leave the generator;
	// AcceptedAt when the API's answer arrived.
	SentAt     time.Time `json:"sent_at"`
	AcceptedAt time.Time `json:"accepted_at"`
	// Status, Reason and UpdatedAt are the last status read
	// (GET /v1/messages/{id}); ConfirmedAt is when its delivery report
	// was applied (zero: not seen).
	Status      service.Status `json:"status,omitempty"`
	Reason      string         `json:"reason,omitempty"`
	UpdatedAt   time.Time      `json:"updated_at,omitzero"`
	ConfirmedAt time.Time      `json:"confirmed_at,omitzero"`
}

// shardStats is shard.json: the mock's stats just before the shard's
// load and after its drain (nil: the mock did not answer), so that a
// merge counts the mock's figures once over all the shards' time rather
// than adding overlapping deltas.
type shardStats struct {
	Before mockwx.Stats  `json:"before"`
	After  *mockwx.Stats `json:"after"`
}

// writeShardFiles writes messages.jsonl and shard.json.
func writeShardFiles(dir string, acct *accountant, st shardStats) error {
	if err := writeJSON(filepath.Join(dir, ShardFile), &st); err != nil {
		return err
	}
	ts := make([]*tracked, 0, len(acct.byMarker))
	for _, t := range acct.byMarker {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].sentAt.Before(ts[j].sentAt) })
	f, err := os.Create(filepath.Join(dir, MessagesFile))
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, t := range ts {
		if err := enc.Encode(MessageRecord{Marker: t.marker, ID: t.id, App: t.app, ToUser: t.touser, SentAt: t.sentAt, AcceptedAt: t.acceptedAt,
			Status: t.status, Reason: t.reason, UpdatedAt: t.updatedAt, ConfirmedAt: t.confirmedAt}); err != nil {
			return fmt.Errorf("%s: %w", MessagesFile, err)
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// readJSONLines calls fn with each line of a JSON-lines file, decoded.
func readJSONLines[T any](path string, fn func(T) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		if len(sc.Bytes()) == 0 {
			continue
		}
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			return fmt.Errorf("%s:%d: %w", path, line, err)
		}
		if err := fn(v); err != nil {
			return err
		}
	}
	return sc.Err()
}

// readShardStats reads a shard's shard.json.
func readShardStats(dir string) (*shardStats, error) {
	b, err := os.ReadFile(filepath.Join(dir, ShardFile))
	if err != nil {
		return nil, err
	}
	var st shardStats
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ShardFile), err)
	}
	return &st, nil
}

// missing reports whether err says a file does not exist.
func missing(err error) bool { return errors.Is(err, fs.ErrNotExist) }
