package console

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/store"
)

// fakeBackend is an in-memory Backend that records the changes asked of it.
type fakeBackend struct {
	mu        sync.Mutex
	overview  service.Overview
	msgs      []*service.Message // newest first
	searchErr error              // returned by Search when set
	searches  []service.MessageQuery
	redrives  []string
	resumes   []string
}

var _ Backend = (*fakeBackend)(nil)

func (f *fakeBackend) Overview(context.Context) (*service.Overview, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ov := f.overview
	ov.Apps = slices.Clone(ov.Apps)
	return &ov, nil
}

func (f *fakeBackend) Search(_ context.Context, q service.MessageQuery) (*service.MessagePage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.searches = append(f.searches, q)
	if f.searchErr != nil {
		return nil, f.searchErr
	}
	limit := q.Limit
	if limit == 0 {
		limit = service.DefaultSearchLimit
	}
	start := 0
	if q.Cursor != "" {
		n, err := strconv.Atoi(q.Cursor)
		if err != nil {
			return nil, &store.QueryError{Field: "cursor", Message: "not a cursor of this search"}
		}
		start = n
	}
	page := &service.MessagePage{Messages: []service.Message{}}
	for i := start; i < len(f.msgs); i++ {
		m := f.msgs[i]
		if (q.App != "" && m.App != q.App) || (q.ToUser != "" && m.ToUser != q.ToUser) ||
			(q.Status != "" && m.Status != q.Status) || (q.Reason != "" && m.Reason != q.Reason) {
			continue
		}
		if len(page.Messages) == limit {
			page.NextCursor = strconv.Itoa(i)
			break
		}
		c := *m
		c.History = nil
		page.Messages = append(page.Messages, c)
	}
	return page, nil
}

func (f *fakeBackend) find(id string) *service.Message {
	for _, m := range f.msgs {
		if m.ID == id {
			return m
		}
	}
	return nil
}

func (f *fakeBackend) Message(_ context.Context, id string) (*service.Message, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.find(id)
	if m == nil {
		return nil, store.ErrNotFound
	}
	c := *m
	c.History = slices.Clone(m.History)
	return &c, nil
}

func (f *fakeBackend) Redrive(_ context.Context, id string, req service.RedriveRequest, requestID string) (*service.Message, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.find(id)
	switch {
	case m == nil:
		return nil, store.ErrNotFound
	case m.Status != service.StatusFailed:
		return nil, store.ErrNotFailed
	case service.NeedsForce(m.Reason) && !req.Force:
		return nil, store.ErrForceRequired
	}
	f.redrives = append(f.redrives, id)
	m.History = append(m.History, service.HistoryEvent{At: time.Now(), Type: service.HistoryRedrive, Forced: req.Force, RequestID: requestID, Reason: m.Reason})
	m.Status, m.Reason, m.Attempts = service.StatusQueued, "", 0
	m.Redrives++
	c := *m
	return &c, nil
}

func (f *fakeBackend) ResumeApp(_ context.Context, app string) (*service.AppStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.overview.Apps {
		if a := &f.overview.Apps[i]; a.App == app {
			f.resumes = append(f.resumes, app)
			a.State, a.Pause = service.AppActive, nil
			c := *a
			return &c, nil
		}
	}
	return nil, store.ErrNotFound
}

// status returns a message's status.
func (f *fakeBackend) status(id string) service.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.find(id).Status
}

// changes returns the redrives and resumes made so far.
func (f *fakeBackend) changes() (redrives, resumes []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.redrives), slices.Clone(f.resumes)
}
