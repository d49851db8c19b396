package loadtest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/scenarios"
	"github.com/wxpush/wxpush/service"
)

// MarkerKey is the data key that carries each message's marker. WeChat
// ignores data keys a template does not have, so the marker travels to the
// mock's ledger (or a real deployment) without reaching the user's screen.
const MarkerKey = "wxload_marker"

// reqHeader carries the generator's request number; the transport copies it
// onto the response so each vegeta result finds its request.
const reqHeader = "X-Wxload-Req"

// item is one message the generator asked the service to queue.
type item struct {
	marker string
	app    string
	touser string
	key    string // Idempotency-Key (single) or idempotency_key (batch item)
}

// request is one HTTP request the generator made.
type request struct {
	n     uint64
	batch bool
	dup   bool // repeats an earlier request, key and body
	items []item
	body  []byte
}

// appLoad is one app as the generator addresses it.
type appLoad struct {
	name    string
	weight  float64
	blocked string // an openid that blocked the app

	templates []templateLoad // the mix, restricted to templates the app has
}

type templateLoad struct {
	id     string
	weight float64
	data   map[string]service.DataValue // valid sample values, marker added per message
}

// generator mints requests: fresh ones with unique markers and keys,
// repeats of earlier ones (duplicate_ratio) and batches (batch.share).
// It is safe for concurrent use, as vegeta's targeter must be.
type generator struct {
	load    scenarios.Load
	tag     string
	apps    []appLoad
	total   float64
	apiKey  string
	targets func() []string // live service base URLs
	rr      atomic.Uint64

	next       atomic.Uint64 // request numbers
	msgs       atomic.Uint64 // message numbers (markers)
	mu         sync.Mutex
	rng        *rand.Rand
	reqs       map[uint64]*request
	repeatable []*request // recent single requests a duplicate may repeat
}

const maxRepeatable = 4096

// newGenerator mints the scenario's messages with markers tag-1, tag-2...;
// stream picks the random sequence (a shard's index, so that shards of one
// seed do not address the same recipients in step; 0 otherwise).
func newGenerator(sc scenarios.Scenario, tag string, stream uint64, apiKey string, mockApps map[string]mockwx.App, targets func() []string) (*generator, error) {
	g := &generator{
		load: sc.Load, tag: tag, apiKey: apiKey, targets: targets,
		rng:  rand.New(rand.NewPCG(uint64(sc.Seed), 0x77786c6f6164^stream)),
		reqs: map[uint64]*request{},
	}
	for _, a := range sc.Mock.Apps {
		ma, ok := mockApps[a.Name]
		if !ok {
			return nil, fmt.Errorf("app %q: the mock does not serve it", a.Name)
		}
		al := appLoad{name: a.Name, weight: a.Weight, blocked: mockwx.DemoBlocked}
		if len(ma.Followers.Blocked) > 0 {
			al.blocked = ma.Followers.Blocked[0]
		}
		for _, ts := range sc.Load.Templates {
			var tpl *mockwx.Template
			for i := range ma.Templates {
				if ma.Templates[i].ID == ts.ID {
					tpl = &ma.Templates[i]
				}
			}
			if tpl == nil {
				return nil, fmt.Errorf("load.templates: app %q (appid %s) has no template %q", a.Name, ma.AppID, ts.ID)
			}
			data, err := sampleData(*tpl)
			if err != nil {
				return nil, err
			}
			al.templates = append(al.templates, templateLoad{id: ts.ID, weight: ts.Weight, data: data})
		}
		g.apps = append(g.apps, al)
		g.total += a.Weight
	}
	return g, nil
}

// sampleData fills every field of the template with a value valid for its
// type (checked with the mock's own validation).
func sampleData(t mockwx.Template) (map[string]service.DataValue, error) {
	candidates := map[mockwx.FieldType][]string{
		mockwx.FieldThing:           {"订单已发货"},
		mockwx.FieldNumber:          {"42"},
		mockwx.FieldLetter:          {"abc"},
		mockwx.FieldSymbol:          {"%"},
		mockwx.FieldCharacterString: {"SN20261123"},
		mockwx.FieldTime:            {"2026-11-23 10:30", "2026年11月23日 10:30", "10:30"},
		mockwx.FieldDate:            {"2026-11-23", "2026年11月23日"},
		mockwx.FieldAmount:          {"¥12.50", "12.50元"},
		mockwx.FieldPhoneNumber:     {"13800138000", "021-12345678"},
		mockwx.FieldCarNumber:       {"粤A12345"},
		mockwx.FieldName:            {"张三"},
		mockwx.FieldPhrase:          {"已发货"},
		mockwx.FieldText:            {"wxload"},
	}
	data := map[string]service.DataValue{}
	for _, f := range t.Fields {
		cands := candidates[f.Type]
		if f.Type == mockwx.FieldConst {
			cands = f.Values
		}
		var found bool
		for _, v := range cands {
			if f.ValidateValue(v) == "" {
				data[f.Key] = service.DataValue{Value: v}
				found = true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("template %q: no sample value fits field %s (%s)", t.ID, f.Key, f.Type)
		}
	}
	return data, nil
}

// Targeter is the vegeta targeter: each call mints the next request.
func (g *generator) Targeter() vegeta.Targeter {
	return func(tgt *vegeta.Target) error {
		urls := g.targets()
		if len(urls) == 0 {
			return fmt.Errorf("no service instance is up")
		}
		base := urls[g.rr.Add(1)%uint64(len(urls))]
		r := g.mint()
		tgt.Method = http.MethodPost
		tgt.Body = r.body
		tgt.Header = http.Header{
			"Content-Type": {"application/json"},
			reqHeader:      {strconv.FormatUint(r.n, 10)},
		}
		if g.apiKey != "" {
			tgt.Header.Set("Authorization", "Bearer "+g.apiKey)
		}
		if r.batch {
			tgt.URL = base + "/v1/messages/batch"
		} else {
			tgt.URL = base + "/v1/messages"
			tgt.Header.Set("Idempotency-Key", r.items[0].key)
		}
		return nil
	}
}

func (g *generator) mint() *request {
	n := g.next.Add(1)
	g.mu.Lock()
	defer g.mu.Unlock()
	roll := g.rng.Float64()
	if roll < g.load.DuplicateRatio && len(g.repeatable) > 0 {
		orig := g.repeatable[g.rng.IntN(len(g.repeatable))]
		r := &request{n: n, dup: true, items: orig.items, body: orig.body}
		g.reqs[n] = r
		return r
	}
	r := &request{n: n}
	if g.load.Batch.Share > 0 && g.rng.Float64() < g.load.Batch.Share {
		r.batch = true
		var batch service.BatchRequest
		for range g.load.Batch.Size {
			it, msg := g.message()
			r.items = append(r.items, it)
			batch.Messages = append(batch.Messages, service.BatchItem{SendRequest: msg, IdempotencyKey: it.key})
		}
		r.body = mustJSON(batch)
	} else {
		it, msg := g.message()
		r.items = []item{it}
		r.body = mustJSON(msg)
		if len(g.repeatable) < maxRepeatable {
			g.repeatable = append(g.repeatable, r)
		} else {
			g.repeatable[g.rng.IntN(maxRepeatable)] = r
		}
	}
	g.reqs[n] = r
	return r
}

// message mints one message with a fresh marker and key. g.mu is held.
func (g *generator) message() (item, service.SendRequest) {
	m := g.msgs.Add(1)
	app := g.pickApp()
	tpl := pick(g.rng, app.templates, func(t templateLoad) float64 { return t.weight })
	marker := g.tag + "-" + strconv.FormatUint(m, 36)
	touser := fmt.Sprintf("oWxLoad%021d", g.rng.IntN(g.load.Recipients))
	if g.load.BlockedRatio > 0 && g.rng.Float64() < g.load.BlockedRatio {
		touser = app.blocked
	}
	data := make(map[string]service.DataValue, len(tpl.data)+1)
	for k, v := range tpl.data {
		data[k] = v
	}
	data[MarkerKey] = service.DataValue{Value: marker}
	it := item{marker: marker, app: app.name, touser: touser, key: "wxload-" + marker}
	return it, service.SendRequest{App: app.name, ToUser: touser, TemplateID: tpl.id, Data: data}
}

func (g *generator) pickApp() appLoad {
	if len(g.apps) == 1 {
		return g.apps[0]
	}
	return pick(g.rng, g.apps, func(a appLoad) float64 { return a.weight })
}

func pick[T any](rng *rand.Rand, xs []T, weight func(T) float64) T {
	var total float64
	for _, x := range xs {
		total += weight(x)
	}
	r := rng.Float64() * total
	for _, x := range xs {
		if r -= weight(x); r < 0 {
			return x
		}
	}
	return xs[len(xs)-1]
}

// request returns request n and forgets it (each result is seen once).
func (g *generator) take(n uint64) *request {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.reqs[n]
	delete(g.reqs, n)
	return r
}

func mustJSON(v any) []byte {
	b, err := wechat.Marshal(v)
	if err != nil {
		panic(err) // only our own well-formed types get here
	}
	return bytes.TrimSpace(b)
}

// echoTransport copies the generator's request number onto the response
// (vegeta results carry response headers only).
type echoTransport struct{ next http.RoundTripper }

func (t echoTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err == nil {
		resp.Header.Set(reqHeader, req.Header.Get(reqHeader))
	}
	return resp, err
}

// pacer adapts a scenario's load shape to vegeta: request n is due at
// HitTime(n); the attack never runs behind by skipping requests (it bursts
// to catch up, and the lag is measured). With a share set, vegeta's
// request k is the scenario's request share.global(k).
type pacer struct {
	load  scenarios.Load
	share share
}

func (p pacer) Pace(elapsed time.Duration, hits uint64) (time.Duration, bool) {
	if elapsed >= p.load.Duration.D() || float64(p.share.global(hits)) >= p.load.TotalHits() {
		return 0, true
	}
	due := p.share.hitTime(p.load, hits)
	if due <= elapsed {
		return 0, false
	}
	return due - elapsed, false
}

func (p pacer) Rate(elapsed time.Duration) float64 { return p.share.rateAt(p.load, elapsed) }

var _ vegeta.Pacer = pacer{}
