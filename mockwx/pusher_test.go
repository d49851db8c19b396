package mockwx

import (
	"bytes"
	"cmp"
	"container/heap"
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/syncbuf"
	"github.com/wxpush/wxpush/internal/wechat"
)

const (
	pushTestToken  = "pushtesttoken"
	pushTestAESKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
	pushTestAppID  = "wx0123456789abcdef"
	pushTestUnix   = 1700000000
	// pushTestMsgID is above 2^53, so a float64 on the way would show.
	pushTestMsgID = int64(1)<<53 + 12345
)

// pushTestClock is the pushers' fixed clock.
func pushTestClock() time.Time { return time.Unix(pushTestUnix, 0) }

func newPushTestCrypter(t *testing.T) *wechat.Crypter {
	t.Helper()
	c, err := wechat.NewCrypter(wechat.CrypterConfig{
		Token:          pushTestToken,
		AppID:          pushTestAppID,
		EncodingAESKey: pushTestAESKey,
	})
	require.NoError(t, err)
	return c
}

func pushTestMessage(msgID int64) wechat.Message {
	return wechat.Message{
		ToUserName:   "gh_0123456789ab",
		FromUserName: "oUser-" + strconv.FormatInt(msgID%1000, 10),
		MsgType:      wechat.MsgTypeEvent,
		Event:        wechat.EventTemplateSendJobFinish,
		MsgID:        msgID,
		Status:       wechat.StatusSuccess,
	}
}

// newPushTestPusher returns a pusher with short test timings (overridable
// through opts) that is closed when the test ends.
func newPushTestPusher(t *testing.T, opts PusherOptions) *Pusher {
	t.Helper()
	if opts.Timeout == 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.RetryDelay == 0 {
		opts.RetryDelay = 20 * time.Millisecond
	}
	if opts.Now == nil {
		opts.Now = pushTestClock
	}
	p := NewPusher(opts)
	t.Cleanup(p.Close)
	return p
}

// pushTestServer starts a receiver on 127.0.0.1 that is closed when the
// test ends.
func pushTestServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// pushWait drains p with a deadline.
func pushWait(t *testing.T, p *Pusher, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	require.NoError(t, p.Wait(ctx), "stats: %+v", p.Stats())
}

// pushLog records, in arrival order, the messages a receiver opened.
type pushLog struct {
	mu    sync.Mutex
	order []int64
	count map[int64]int
}

func (l *pushLog) add(id int64) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.count == nil {
		l.count = map[int64]int{}
	}
	l.order = append(l.order, id)
	l.count[id]++
	return l.count[id]
}

func (l *pushLog) snapshot() ([]int64, map[int64]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := make(map[int64]int, len(l.count))
	for k, v := range l.count {
		m[k] = v
	}
	return append([]int64(nil), l.order...), m
}

// openPush verifies a callback request with c and returns its message, or
// reports the problem and returns nil.
func openPush(t *testing.T, c *wechat.Crypter, r *http.Request) *wechat.Message {
	body, err := io.ReadAll(r.Body)
	if !assert.NoError(t, err) {
		return nil
	}
	m, err := c.OpenCallback(r.URL.Query(), body)
	if !assert.NoError(t, err) {
		return nil
	}
	return m
}

func TestPusherModes(t *testing.T) {
	for _, mode := range []wechat.Mode{wechat.ModePlain, wechat.ModeCompat, wechat.ModeSafe} {
		t.Run(string(mode), func(t *testing.T) {
			crypter := newPushTestCrypter(t)
			var (
				mu  sync.Mutex
				got = map[int64]*wechat.Message{}
			)
			srv := pushTestServer(t, func(w http.ResponseWriter, r *http.Request) {
				body, err := io.ReadAll(r.Body)
				assert.NoError(t, err)
				q := r.URL.Query()
				assert.Equal(t, http.MethodPost, r.Method)
				assert.Equal(t, "text/xml", r.Header.Get("Content-Type"))
				assert.Regexp(t, `^[0-9a-f]{40}$`, q.Get(wechat.ParamSignature))
				assert.Equal(t, strconv.Itoa(pushTestUnix), q.Get(wechat.ParamTimestamp))
				assert.Regexp(t, `^[0-9]{1,10}$`, q.Get(wechat.ParamNonce))
				if mode == wechat.ModePlain {
					assert.False(t, q.Has(wechat.ParamEncryptType))
					assert.False(t, q.Has(wechat.ParamMsgSignature))
				} else {
					assert.Equal(t, wechat.EncryptTypeAES, q.Get(wechat.ParamEncryptType))
					assert.Regexp(t, `^[0-9a-f]{40}$`, q.Get(wechat.ParamMsgSignature))
				}
				outer, err := wechat.ParseMessage(body)
				if assert.NoError(t, err) {
					switch mode {
					case wechat.ModePlain:
						assert.Empty(t, outer.Encrypt)
						assert.NotEmpty(t, outer.FromUserName)
					case wechat.ModeCompat:
						assert.NotEmpty(t, outer.Encrypt)
						assert.NotEmpty(t, outer.FromUserName)
					case wechat.ModeSafe:
						assert.NotEmpty(t, outer.Encrypt)
						assert.Empty(t, outer.FromUserName)
						assert.Zero(t, outer.MsgID)
					}
				}
				m, err := crypter.OpenCallback(q, body)
				if assert.NoError(t, err) {
					assert.Equal(t, m.FromUserName, q.Get(wechat.ParamOpenID))
					if m.MsgID == pushTestMsgID+1 {
						assert.Equal(t, "1", q.Get("app"), "the URL's own query is kept")
					}
					mu.Lock()
					got[m.MsgID] = m
					mu.Unlock()
				}
				_, _ = io.WriteString(w, "success")
			})
			p := newPushTestPusher(t, PusherOptions{Rand: rand.NewChaCha8([32]byte{1})})

			first := pushTestMessage(pushTestMsgID)
			p.Schedule(Push{URL: srv.URL + "/cb", Mode: mode, Crypter: crypter, Message: first})
			second := pushTestMessage(pushTestMsgID + 1)
			second.Status = wechat.StatusUserBlock
			second.CreateTime = 1600000000
			p.Schedule(Push{URL: srv.URL + "/cb?app=1", Mode: mode, Crypter: crypter, Message: second})
			pushWait(t, p, 10*time.Second)

			assert.Equal(t, CallbackStats{Scheduled: 2, Sent: 2, Attempts: 2, Acked: 2}, p.Stats())
			mu.Lock()
			defer mu.Unlock()
			require.Len(t, got, 2)
			for _, want := range []wechat.Message{first, second} {
				m := got[want.MsgID]
				require.NotNil(t, m, "msgid %d", want.MsgID)
				if want.CreateTime == 0 {
					want.CreateTime = pushTestUnix // set from the pusher's clock
				}
				assert.Equal(t, want.ToUserName, m.ToUserName)
				assert.Equal(t, want.FromUserName, m.FromUserName)
				assert.Equal(t, want.CreateTime, m.CreateTime)
				assert.Equal(t, want.MsgType, m.MsgType)
				assert.Equal(t, want.Event, m.Event)
				assert.Equal(t, want.MsgID, m.MsgID)
				assert.Equal(t, want.Status, m.Status)
			}
		})
	}
}

func TestPusherRetriesServerErrors(t *testing.T) {
	crypter := newPushTestCrypter(t)
	var calls pushLog
	var queries, bodies []string
	srv := pushTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		assert.NoError(t, err)
		m, err := crypter.OpenCallback(r.URL.Query(), body)
		if !assert.NoError(t, err) {
			return
		}
		calls.mu.Lock()
		queries = append(queries, r.URL.RawQuery)
		bodies = append(bodies, string(body))
		calls.mu.Unlock()
		if calls.add(m.MsgID) <= 2 {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "success")
	})
	var tick int64
	var clockMu sync.Mutex
	p := newPushTestPusher(t, PusherOptions{
		Now: func() time.Time { // every reading one second later
			clockMu.Lock()
			defer clockMu.Unlock()
			tick++
			return time.Unix(pushTestUnix+tick, 0)
		},
	})
	p.Schedule(Push{URL: srv.URL, Mode: wechat.ModeSafe, Crypter: crypter, Message: pushTestMessage(7)})
	pushWait(t, p, 10*time.Second)

	assert.Equal(t, CallbackStats{Scheduled: 1, Sent: 1, Attempts: 3, Acked: 1}, p.Stats())
	_, count := calls.snapshot()
	assert.Equal(t, map[int64]int{7: 3}, count)
	calls.mu.Lock()
	defer calls.mu.Unlock()
	assert.Len(t, queries, 3)
	assert.Len(t, uniq(queries), 1, "every try sends the same query (timestamp, nonce, signatures): %v", queries)
	assert.Len(t, uniq(bodies), 1, "every try sends the same body")
}

func uniq(s []string) map[string]bool {
	m := map[string]bool{}
	for _, v := range s {
		m[v] = true
	}
	return m
}

func TestPusherTimeoutRetriesAtOnce(t *testing.T) {
	crypter := newPushTestCrypter(t)
	var calls pushLog
	srv := pushTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		if m := openPush(t, crypter, r); m != nil {
			calls.add(m.MsgID)
		}
		<-r.Context().Done() // never answers; the pusher gives up
	})
	p := newPushTestPusher(t, PusherOptions{
		Timeout: 50 * time.Millisecond,
		Retries: 2,
		// Were a timed-out attempt followed by RetryDelay, Wait would
		// time out: the retry after a timeout is immediate.
		RetryDelay: time.Hour,
	})
	p.Schedule(Push{URL: srv.URL, Mode: wechat.ModeCompat, Crypter: crypter, Message: pushTestMessage(9)})
	pushWait(t, p, 10*time.Second)

	assert.Equal(t, CallbackStats{Scheduled: 1, Sent: 1, Attempts: 3, Failed: 1}, p.Stats())
	_, count := calls.snapshot()
	assert.Equal(t, map[int64]int{9: 3}, count)
}

// TestPusherReplies: WeChat retries only when no answer comes; a 200
// answer settles the push at once, an invalid one as reply_invalid.
func TestPusherReplies(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		outcome string // "" for unanswered: retried, then failed
	}{
		{"success", 200, "success", OutcomeAcked},
		{"empty body", 200, "", OutcomeAcked},
		{"success with whitespace", 200, " success\r\n", OutcomeAcked},
		{"other body", 200, "nope", OutcomeReplyInvalid},
		{"upper case", 200, "SUCCESS", OutcomeReplyInvalid},
		{"json", 200, `{"errcode":0}`, OutcomeReplyInvalid},
		{"long body", 200, strings.Repeat("x", 10<<10), OutcomeReplyInvalid},
		{"too long body", 200, "<xml>" + strings.Repeat("x", 70<<10) + "</xml>", OutcomeReplyInvalid},
		{"no content", 204, "", ""},
		{"server error saying success", 500, "success", ""},
		{"redirect not followed", 302, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			crypter := newPushTestCrypter(t)
			var calls pushLog
			srv := pushTestServer(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/elsewhere" {
					_, _ = io.WriteString(w, "success")
					return
				}
				if m := openPush(t, crypter, r); m != nil {
					calls.add(m.MsgID)
				}
				if tt.status == http.StatusFound {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			})
			p := newPushTestPusher(t, PusherOptions{Retries: 2, RetryDelay: 5 * time.Millisecond})
			var result PushResult
			done := make(chan struct{})
			p.Schedule(Push{URL: srv.URL + "/cb", Mode: wechat.ModePlain, Crypter: crypter, Message: pushTestMessage(1),
				Done: func(r PushResult) { result = r; close(done) }})
			pushWait(t, p, 10*time.Second)
			<-done

			want := CallbackStats{Scheduled: 1, Sent: 1, Attempts: 1}
			switch tt.outcome {
			case OutcomeAcked:
				want.Acked = 1
			case OutcomeReplyInvalid:
				want.Invalid = 1
			default:
				want.Attempts, want.Failed = 3, 1
			}
			assert.Equal(t, want, p.Stats())
			_, count := calls.snapshot()
			assert.Equal(t, map[int64]int{1: int(want.Attempts)}, count)
			wantOutcome := cmp.Or(tt.outcome, OutcomeFailed)
			assert.Equal(t, wantOutcome, result.Outcome, "reason %q", result.Reason)
			assert.Equal(t, int(want.Attempts), result.Attempts)
			if wantOutcome != OutcomeAcked {
				assert.NotEmpty(t, result.Reason)
			}
		})
	}
}

// TestPusherEncryptedEmptyEnvelopeIsAck: an SDK that encrypts every answer
// acknowledges a delivery report with an encrypted envelope of empty
// content; that is one delivery, acknowledged, in every mode.
func TestPusherEncryptedEmptyEnvelopeIsAck(t *testing.T) {
	for _, mode := range []wechat.Mode{wechat.ModePlain, wechat.ModeCompat, wechat.ModeSafe} {
		for _, content := range []string{"", "success"} {
			t.Run(string(mode)+"/"+strconv.Quote(content), func(t *testing.T) {
				crypter := newPushTestCrypter(t)
				var calls pushLog
				srv := pushTestServer(t, func(w http.ResponseWriter, r *http.Request) {
					if m := openPush(t, crypter, r); m != nil {
						calls.add(m.MsgID)
					}
					env, err := crypter.SealReply([]byte(content), 1700000123, r.URL.Query().Get(wechat.ParamNonce))
					if !assert.NoError(t, err) {
						return
					}
					b, err := xml.Marshal(env)
					assert.NoError(t, err)
					_, _ = w.Write(b)
				})
				p := newPushTestPusher(t, PusherOptions{Retries: 3, RetryDelay: 5 * time.Millisecond})
				p.Schedule(Push{URL: srv.URL, Mode: mode, Crypter: crypter, Message: pushTestMessage(5)})
				pushWait(t, p, 10*time.Second)
				assert.Equal(t, CallbackStats{Scheduled: 1, Sent: 1, Attempts: 1, Acked: 1}, p.Stats())
				_, count := calls.snapshot()
				assert.Equal(t, map[int64]int{5: 1}, count, "one delivery, not 4")
			})
		}
	}
}

func TestPusherDrop(t *testing.T) {
	crypter := newPushTestCrypter(t)
	var calls pushLog
	srv := pushTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		if m := openPush(t, crypter, r); m != nil {
			calls.add(m.MsgID)
		}
		_, _ = io.WriteString(w, "success")
	})
	p := newPushTestPusher(t, PusherOptions{})
	p.Schedule(Push{URL: srv.URL, Mode: wechat.ModePlain, Crypter: crypter, Message: pushTestMessage(1), Drop: true})
	p.Schedule(Push{URL: srv.URL, Mode: wechat.ModePlain, Crypter: crypter, Message: pushTestMessage(2)})
	pushWait(t, p, 10*time.Second)

	assert.Equal(t, CallbackStats{Scheduled: 2, Sent: 2, Attempts: 1, Acked: 1, Failed: 1}, p.Stats())
	_, count := calls.snapshot()
	assert.Equal(t, map[int64]int{2: 1}, count, "the dropped report made no request")
}

func TestPusherUnsendable(t *testing.T) {
	crypter := newPushTestCrypter(t)
	plainOnly, err := wechat.NewCrypter(wechat.CrypterConfig{Token: pushTestToken})
	require.NoError(t, err)
	p := newPushTestPusher(t, PusherOptions{})
	p.Schedule(Push{URL: "http://127.0.0.1:1/cb", Mode: wechat.ModePlain, Message: pushTestMessage(1)})                    // no crypter
	p.Schedule(Push{URL: "http://127.0.0.1:1/cb", Mode: wechat.ModeSafe, Crypter: plainOnly, Message: pushTestMessage(2)}) // no key
	p.Schedule(Push{URL: "://bad url", Mode: wechat.ModePlain, Crypter: crypter, Message: pushTestMessage(3)})
	pushWait(t, p, 10*time.Second)
	assert.Equal(t, CallbackStats{Scheduled: 3, Sent: 3, Failed: 3}, p.Stats(), "failed without requests or retries")
}

func TestPusherNoncesFromRand(t *testing.T) {
	crypter := newPushTestCrypter(t)
	var (
		mu     sync.Mutex
		nonces []string
	)
	srv := pushTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		if openPush(t, crypter, r) != nil {
			mu.Lock()
			nonces = append(nonces, r.URL.Query().Get(wechat.ParamNonce))
			mu.Unlock()
		}
		_, _ = io.WriteString(w, "success")
	})
	// Two nonces' worth of bytes: the third push finds the reader
	// exhausted and fails without a request.
	rnd := bytes.NewReader([]byte{0, 0, 1, 0, 0xff, 0xff, 0xff, 0xff})
	p := newPushTestPusher(t, PusherOptions{Workers: 1, Rand: rnd})
	for i := range 3 {
		p.Schedule(Push{URL: srv.URL, Mode: wechat.ModePlain, Crypter: crypter, Message: pushTestMessage(int64(i))})
	}
	pushWait(t, p, 10*time.Second)

	assert.Equal(t, CallbackStats{Scheduled: 3, Sent: 3, Attempts: 2, Acked: 2, Failed: 1}, p.Stats())
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"256", "4294967295"}, nonces)
}

func TestPusherDelayOrder(t *testing.T) {
	crypter := newPushTestCrypter(t)
	var calls pushLog
	var (
		mu      sync.Mutex
		arrived = map[int64]time.Time{}
	)
	srv := pushTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		if m := openPush(t, crypter, r); m != nil {
			mu.Lock()
			arrived[m.MsgID] = time.Now()
			mu.Unlock()
			calls.add(m.MsgID)
		}
		_, _ = io.WriteString(w, "success")
	})
	// One worker, so the receiver sees exactly the dispatch order.
	p := newPushTestPusher(t, PusherOptions{Workers: 1})
	delays := map[int64]time.Duration{
		1: 250 * time.Millisecond, 2: 200 * time.Millisecond, 3: 150 * time.Millisecond,
		4: 100 * time.Millisecond, 5: 50 * time.Millisecond,
		6: 0, 7: 0, 8: 0, // equal due times keep scheduling order
	}
	start := time.Now()
	for id := int64(1); id <= 8; id++ {
		p.Schedule(Push{URL: srv.URL, Mode: wechat.ModePlain, Crypter: crypter, Message: pushTestMessage(id), Delay: delays[id]})
	}
	pushWait(t, p, 10*time.Second)

	order, _ := calls.snapshot()
	assert.Equal(t, []int64{6, 7, 8, 5, 4, 3, 2, 1}, order)
	mu.Lock()
	defer mu.Unlock()
	for id, d := range delays {
		// Timers never fire early, so this lower bound is not flaky.
		assert.GreaterOrEqual(t, arrived[id].Sub(start), d, "msgid %d came before its delay", id)
	}
}

func TestPushQueueOrder(t *testing.T) {
	base := time.Now()
	var q pushQueue
	for i, d := range []time.Duration{3, 1, 2, 1, 0, 1} {
		heap.Push(&q, &pushItem{due: base.Add(d * time.Second), seq: uint64(i + 1)})
	}
	var seqs []uint64
	for q.Len() > 0 {
		seqs = append(seqs, heap.Pop(&q).(*pushItem).seq)
	}
	assert.Equal(t, []uint64{5, 2, 4, 6, 3, 1}, seqs, "by due time, then scheduling order")
}

func TestPusherResetQueued(t *testing.T) {
	crypter := newPushTestCrypter(t)
	p := newPushTestPusher(t, PusherOptions{})
	for i := range 5 {
		p.Schedule(Push{URL: "http://127.0.0.1:1/", Mode: wechat.ModePlain, Crypter: crypter, Message: pushTestMessage(int64(i)), Delay: time.Hour})
	}
	assert.Equal(t, CallbackStats{Scheduled: 5, Pending: 5}, p.Stats())
	p.Reset()
	assert.Equal(t, CallbackStats{}, p.Stats())
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	assert.NoError(t, p.Wait(ctx), "nothing pending after Reset")
}

func TestPusherResetInFlight(t *testing.T) {
	crypter := newPushTestCrypter(t)
	const oldID, newID = 100, 200
	var calls pushLog
	entered := make(chan struct{}, 1)
	srv := pushTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		m := openPush(t, crypter, r)
		if m == nil {
			return
		}
		calls.add(m.MsgID)
		if m.MsgID == oldID {
			select {
			case entered <- struct{}{}:
			default:
			}
			<-r.Context().Done() // hang until the pusher gives up on it
			return
		}
		_, _ = io.WriteString(w, "success")
	})
	const retryDelay = 20 * time.Millisecond
	p := newPushTestPusher(t, PusherOptions{Workers: 1, Timeout: time.Minute, RetryDelay: retryDelay})
	p.Schedule(Push{URL: srv.URL, Mode: wechat.ModeSafe, Crypter: crypter, Message: pushTestMessage(oldID)})
	<-entered
	p.Reset()
	assert.Equal(t, CallbackStats{}, p.Stats())

	// With one worker and due-time order, a retry of the old push (due
	// after at most retryDelay) would reach the receiver before this one.
	p.Schedule(Push{URL: srv.URL, Mode: wechat.ModeSafe, Crypter: crypter, Message: pushTestMessage(newID), Delay: 5 * retryDelay})
	pushWait(t, p, 10*time.Second)

	assert.Equal(t, CallbackStats{Scheduled: 1, Sent: 1, Attempts: 1, Acked: 1}, p.Stats())
	order, _ := calls.snapshot()
	assert.Equal(t, []int64{oldID, newID}, order)
}

func TestPusherCloseWhileHanging(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		crypter := newPushTestCrypter(t)
		entered := make(chan struct{}, 16)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			select {
			case entered <- struct{}{}:
			default:
			}
			<-r.Context().Done() // hang until the client goes away
		}))
		defer srv.Close()

		p := NewPusher(PusherOptions{Workers: 4, Timeout: time.Minute, Now: pushTestClock})
		for i := range 8 {
			p.Schedule(Push{URL: srv.URL, Mode: wechat.ModeCompat, Crypter: crypter, Message: pushTestMessage(int64(i))})
		}
		p.Schedule(Push{URL: srv.URL, Mode: wechat.ModeCompat, Crypter: crypter, Message: pushTestMessage(99), Delay: time.Hour})
		<-entered

		closed := make(chan struct{})
		go func() {
			p.Close()
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not return while the receiver hangs")
		}
		p.Close() // idempotent

		st := p.Stats()
		assert.Equal(t, int64(9), st.Scheduled)
		assert.Equal(t, int64(9), st.Pending, "abandoned pushes stay pending")
		assert.Zero(t, st.Failed, "abandoned pushes are not failures")
		assert.Zero(t, st.Acked)
		assert.ErrorIs(t, p.Wait(context.Background()), ErrPusherClosed)

		p.Schedule(Push{URL: srv.URL, Mode: wechat.ModePlain, Crypter: crypter, Message: pushTestMessage(1)})
		assert.Equal(t, st, p.Stats(), "Schedule after Close is ignored")
	}()

	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines: %d before, %d after Close\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

func TestPusherWaitDeadline(t *testing.T) {
	crypter := newPushTestCrypter(t)
	p := newPushTestPusher(t, PusherOptions{})
	p.Schedule(Push{URL: "http://127.0.0.1:1/", Mode: wechat.ModePlain, Crypter: crypter, Message: pushTestMessage(1), Delay: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, p.Wait(ctx), context.DeadlineExceeded)
}

func TestPusherConcurrentSchedule(t *testing.T) {
	const goroutines, each = 20, 100
	crypter := newPushTestCrypter(t)
	var calls pushLog
	srv := pushTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		if m := openPush(t, crypter, r); m != nil {
			calls.add(m.MsgID)
		}
		_, _ = io.WriteString(w, "success")
	})
	p := newPushTestPusher(t, PusherOptions{Rand: rand.NewChaCha8([32]byte{2})})
	modes := []wechat.Mode{wechat.ModePlain, wechat.ModeCompat, wechat.ModeSafe}
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				id := pushTestMsgID + int64(g*each+i)
				p.Schedule(Push{URL: srv.URL, Mode: modes[i%3], Crypter: crypter, Message: pushTestMessage(id)})
				if i%10 == 0 {
					_ = p.Stats()
				}
			}
		})
	}
	wg.Wait()
	pushWait(t, p, 60*time.Second)

	const n = goroutines * each
	assert.Equal(t, CallbackStats{Scheduled: n, Sent: n, Attempts: n, Acked: n}, p.Stats())
	_, count := calls.snapshot()
	assert.Len(t, count, n)
	for id, c := range count {
		if c != 1 {
			t.Errorf("msgid %d delivered %d times", id, c)
		}
	}
}

func TestPusherLogsNoSecrets(t *testing.T) {
	crypter := newPushTestCrypter(t)
	srv := pushTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusBadGateway)
	})
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close() // connection refused: the client error names the full URL

	var logs syncbuf.Buffer
	p := newPushTestPusher(t, PusherOptions{
		Retries:    1,
		RetryDelay: time.Millisecond,
		Logger:     slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	withSecrets := func(base string) string {
		u, err := url.Parse(base + "/cb?key=QUERYSECRET#FRAGSECRET")
		require.NoError(t, err)
		u.User = url.UserPassword("user", "PASSSECRET")
		return u.String()
	}
	for i, u := range []string{withSecrets(srv.URL), withSecrets(deadURL)} {
		p.Schedule(Push{URL: u, Mode: wechat.ModeSafe, Crypter: crypter, Message: pushTestMessage(int64(i))})
	}
	p.Schedule(Push{URL: withSecrets(srv.URL), Mode: wechat.ModeSafe, Crypter: crypter, Message: pushTestMessage(9), Drop: true})
	pushWait(t, p, 10*time.Second)
	p.Close()

	assert.Equal(t, CallbackStats{Scheduled: 3, Sent: 3, Attempts: 4, Failed: 3}, p.Stats())
	out := logs.String()
	assert.Contains(t, out, "callback failed")
	assert.Contains(t, out, "status 502")
	assert.Contains(t, out, "connection refused")
	assert.Contains(t, out, "dropped by fault")
	assert.Contains(t, out, srv.URL+"/cb")
	for _, secret := range []string{pushTestToken, pushTestAESKey, "QUERYSECRET", "FRAGSECRET", "PASSSECRET", "signature", "nonce=", "Encrypt"} {
		assert.NotContains(t, out, secret)
	}
}

func TestPusherStatsJSON(t *testing.T) {
	b, err := json.Marshal(CallbackStats{Scheduled: 1, Sent: 2, Attempts: 3, Acked: 4, Replied: 7, Invalid: 8, Failed: 5, Pending: 6})
	require.NoError(t, err)
	assert.JSONEq(t, `{"scheduled":1,"sent":2,"attempts":3,"acked":4,"replied":7,"invalid":8,"failed":5,"pending":6}`, string(b))
}

func BenchmarkPusherSchedule(b *testing.B) {
	crypter, err := wechat.NewCrypter(wechat.CrypterConfig{Token: pushTestToken})
	require.NoError(b, err)
	p := NewPusher(PusherOptions{})
	defer p.Close()
	b.ReportAllocs()
	for i := range b.N {
		p.Schedule(Push{URL: "http://127.0.0.1:1/", Crypter: crypter, Message: pushTestMessage(int64(i)), Delay: time.Hour})
	}
}
