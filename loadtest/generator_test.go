package loadtest

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/scenarios"
	"github.com/wxpush/wxpush/service"
)

// strings of a message's data, as the mock validates them.
func dataStrings(d map[string]service.DataValue) map[string]string {
	out := make(map[string]string, len(d))
	for k, v := range d {
		out[k] = v.Value
	}
	return out
}

// TestSampleDataDemoTemplates: for every template of the mock's demo app,
// sampleData fills every field with a value the mock's own validation
// accepts, also with the marker key added.
func TestSampleDataDemoTemplates(t *testing.T) {
	app := mockwx.DemoApp()
	require.NotEmpty(t, app.Templates)
	for _, tpl := range app.Templates {
		t.Run(tpl.ID, func(t *testing.T) {
			data, err := sampleData(tpl)
			require.NoError(t, err)
			assert.Len(t, data, len(tpl.Fields))
			s := dataStrings(data)
			assert.Empty(t, mockwx.ValidateData(tpl.Fields, s))
			s[MarkerKey] = "wlabc-1"
			assert.Empty(t, mockwx.ValidateData(tpl.Fields, s), "the mock ignores the marker key")
		})
	}
}

// TestSampleDataEveryFieldType: every field type has a sample value; a
// const field takes one of its values; a const field whose values all fail
// validation is an error naming the template and field.
func TestSampleDataEveryFieldType(t *testing.T) {
	types := []mockwx.FieldType{mockwx.FieldThing, mockwx.FieldNumber, mockwx.FieldLetter, mockwx.FieldSymbol,
		mockwx.FieldCharacterString, mockwx.FieldTime, mockwx.FieldDate, mockwx.FieldAmount, mockwx.FieldPhoneNumber,
		mockwx.FieldCarNumber, mockwx.FieldName, mockwx.FieldPhrase, mockwx.FieldText}
	var fields []mockwx.Field
	for i, ft := range types {
		fields = append(fields, mockwx.Field{Key: string(ft) + strconv.Itoa(i+1), Type: ft})
	}
	fields = append(fields, mockwx.Field{Key: "const99", Type: mockwx.FieldConst, Values: []string{"已确认"}})
	tpl := mockwx.Template{ID: "all", Fields: fields}
	data, err := sampleData(tpl)
	require.NoError(t, err)
	assert.Empty(t, mockwx.ValidateData(fields, dataStrings(data)))
	assert.Equal(t, "已确认", data["const99"].Value)

	_, err = sampleData(mockwx.Template{ID: "bad", Fields: []mockwx.Field{{Key: "const1", Type: mockwx.FieldConst}}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `template "bad"`)
	assert.Contains(t, err.Error(), "const1")
}

// genScenario parses a scenario for the generator tests.
func genScenario(t *testing.T, load string) scenarios.Scenario {
	t.Helper()
	sc, err := scenarios.Parse([]byte(`name: gen
description: generator test
mock:
  apps:
    - {name: shop, weight: 3}
    - {name: news}
load:
`+load+`
expect: [delivery.lost == 0]
`), "gen.yaml")
	require.NoError(t, err)
	return sc
}

func demoApps(names ...string) map[string]mockwx.App {
	out := map[string]mockwx.App{}
	for _, n := range names {
		out[n] = scenarios.App{Name: n}.MockApp(1)
	}
	return out
}

// TestGeneratorRequests mints requests with duplicates and batches and
// checks what each kind carries: fresh markers are unique; a duplicate
// repeats an earlier single request's key and body; a batch carries one
// idempotency key per item; every message's data has its marker and
// valid sample values.
func TestGeneratorRequests(t *testing.T) {
	sc := genScenario(t, `  duration: 10s
  pacer: {rate: 100}
  recipients: 50
  duplicate_ratio: 0.3
  templates: [{id: order_shipped, weight: 2}, {id: payment_received}]
  batch: {share: 0.2, size: 4}`)
	apps := demoApps("shop", "news")
	g, err := newGenerator(sc, "wltag", 0, "k3y", apps, func() []string { return []string{"http://a", "http://b"} })
	require.NoError(t, err)
	tgt := g.Targeter()

	markers := map[string]bool{}
	singles := map[string]*request{} // by key: the first request with it
	var nDup, nBatch, nSingle int
	appCount := map[string]int{}
	urls := map[string]int{}
	for range 2000 {
		var target vegeta.Target
		require.NoError(t, tgt(&target))
		n, err := strconv.ParseUint(target.Header.Get(reqHeader), 10, 64)
		require.NoError(t, err)
		r := g.take(n)
		require.NotNil(t, r, "request %d is known", n)
		assert.Nil(t, g.take(n), "take forgets")
		assert.Equal(t, r.body, target.Body)
		assert.Equal(t, "Bearer k3y", target.Header.Get("Authorization"))
		assert.Equal(t, http.MethodPost, target.Method)
		urls[target.URL[:len("http://a")]]++

		switch {
		case r.dup:
			nDup++
			require.Len(t, r.items, 1, "only single requests are repeated")
			orig, ok := singles[r.items[0].key]
			require.True(t, ok, "a duplicate repeats an earlier request's key %s", r.items[0].key)
			assert.Equal(t, orig.body, r.body, "a duplicate repeats the body")
			assert.Equal(t, orig.items, r.items)
			assert.Equal(t, r.items[0].key, target.Header.Get("Idempotency-Key"))
			assert.True(t, strings.HasSuffix(target.URL, "/v1/messages"))
		case r.batch:
			nBatch++
			assert.True(t, strings.HasSuffix(target.URL, "/v1/messages/batch"))
			assert.Empty(t, target.Header.Get("Idempotency-Key"), "a batch's keys are per item")
			var br service.BatchRequest
			require.NoError(t, json.Unmarshal(r.body, &br))
			require.Len(t, br.Messages, 4)
			require.Len(t, r.items, 4)
			for i, m := range br.Messages {
				it := r.items[i]
				assert.Equal(t, it.key, m.IdempotencyKey)
				assert.Equal(t, it.marker, m.Data[MarkerKey].Value)
				assert.Equal(t, it.app, m.App)
				assert.Equal(t, it.touser, m.ToUser)
				assert.False(t, markers[it.marker], "marker %s reused", it.marker)
				markers[it.marker] = true
				appCount[it.app]++
			}
		default:
			nSingle++
			assert.True(t, strings.HasSuffix(target.URL, "/v1/messages"))
			require.Len(t, r.items, 1)
			it := r.items[0]
			assert.Equal(t, it.key, target.Header.Get("Idempotency-Key"))
			assert.Equal(t, "wxload-"+it.marker, it.key)
			assert.True(t, strings.HasPrefix(it.marker, "wltag-"), it.marker)
			assert.False(t, markers[it.marker], "marker %s reused", it.marker)
			markers[it.marker] = true
			singles[it.key] = r
			appCount[it.app]++
			var m service.SendRequest
			require.NoError(t, json.Unmarshal(r.body, &m))
			assert.Equal(t, it.marker, m.Data[MarkerKey].Value)
			assert.Equal(t, it.app, m.App)
			assert.Equal(t, it.touser, m.ToUser)
			var tpl mockwx.Template
			for _, x := range apps[m.App].Templates {
				if x.ID == m.TemplateID {
					tpl = x
				}
			}
			require.NotEmpty(t, tpl.ID, "template %q is in the mix", m.TemplateID)
			assert.Contains(t, []string{"order_shipped", "payment_received"}, m.TemplateID)
			assert.Empty(t, mockwx.ValidateData(tpl.Fields, dataStrings(m.Data)))
			assert.Regexp(t, `^oWxLoad[0-9]{21}$`, m.ToUser)
		}
	}
	// The shares are random; with 2000 draws they are far from 0 and from
	// everything (duplicates: 0.3; batches: 0.2 of the rest).
	assert.Greater(t, nDup, 400)
	assert.Less(t, nDup, 800)
	assert.Greater(t, nBatch, 150)
	assert.Less(t, nBatch, 450)
	assert.Greater(t, nSingle, 800)
	assert.Greater(t, appCount["shop"], appCount["news"], "shop has 3 times news's weight")
	assert.Greater(t, appCount["news"], 0)
	assert.Equal(t, 2, len(urls), "requests go to every instance")
	assert.Equal(t, uint64(len(markers)), g.msgs.Load(), "every message has its own marker")
}

// TestGeneratorSeeded: the same seed mints the same requests (apart from
// the run's tag).
func TestGeneratorSeeded(t *testing.T) {
	sc := genScenario(t, `  duration: 1s
  pacer: {rate: 100}
  duplicate_ratio: 0.5
  batch: {share: 0.3, size: 2}`)
	mint := func() []string {
		g, err := newGenerator(sc, "wlseed", 0, "", demoApps("shop", "news"), func() []string { return []string{"http://x"} })
		require.NoError(t, err)
		var out []string
		for range 50 {
			out = append(out, string(g.mint().body))
		}
		return out
	}
	assert.Equal(t, mint(), mint())
}

// TestGeneratorBlocked: blocked_ratio 1 addresses every message to the
// demo app's blocked user.
func TestGeneratorBlocked(t *testing.T) {
	sc := genScenario(t, `  duration: 1s
  pacer: {rate: 10}
  blocked_ratio: 1`)
	g, err := newGenerator(sc, "wlb", 0, "", demoApps("shop", "news"), func() []string { return []string{"http://x"} })
	require.NoError(t, err)
	for range 20 {
		assert.Equal(t, mockwx.DemoBlocked, g.mint().items[0].touser)
	}
}

// TestGeneratorErrors: an app the mock does not serve, or a template an
// app does not have, is refused before the run; no instance up is a
// targeter error.
func TestGeneratorErrors(t *testing.T) {
	sc := genScenario(t, `  duration: 1s
  pacer: {rate: 10}`)
	_, err := newGenerator(sc, "wl", 0, "", demoApps("shop"), nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `app "news"`)

	sc = genScenario(t, `  duration: 1s
  pacer: {rate: 10}
  templates: [{id: nope}]`)
	_, err = newGenerator(sc, "wl", 0, "", demoApps("shop", "news"), nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `no template "nope"`)

	sc = genScenario(t, `  duration: 1s
  pacer: {rate: 10}`)
	g, err := newGenerator(sc, "wl", 0, "", demoApps("shop", "news"), func() []string { return nil })
	require.NoError(t, err)
	var target vegeta.Target
	assert.Error(t, g.Targeter()(&target))
}

// TestJudgeGenerator: the generator could not keep up only when requests
// left late and the rate fell short; the machine was busy when its
// self-check fell far below its usual rate, or requests left late with the
// rate met. Only the first marks the run as not measuring the service.
func TestJudgeGenerator(t *testing.T) {
	late := Percentiles{P99: 150}
	for _, tc := range []struct {
		name            string
		g               Generator
		saturated, busy bool
		reason, busyWhy string
	}{
		{"fine", Generator{TargetRate: 100, AchievedRate: 99, SelfCheckRate: 10000, UsualSelfCheckRate: 9000, LagMS: Percentiles{P99: 2}}, false, false, "", ""},
		{"no self-check, no history", Generator{TargetRate: 100, AchievedRate: 100}, false, false, "", ""},
		{"late and short: could not keep up", Generator{TargetRate: 100, AchievedRate: 80, SelfCheckRate: 10000, LagMS: late},
			true, false, "could not keep up: requests left up to 150 ms (p99) after they were due and it sent 80.0/s of the 100.0/s", ""},
		{"late with the rate met: busy", Generator{TargetRate: 100, AchievedRate: 100, SelfCheckRate: 10000, LagMS: late},
			false, true, "", "although the rate was met"},
		{"short but on time: the service held the generator back, not the machine", Generator{TargetRate: 100, AchievedRate: 90, SelfCheckRate: 10000}, false, false, "", ""},
		{"self-check far below usual: busy", Generator{TargetRate: 100, AchievedRate: 100, SelfCheckRate: 2000, UsualSelfCheckRate: 8000},
			false, true, "", "the self-check reached 2000/s, 25% of this machine's usual 8000/s"},
		{"self-check a little below usual", Generator{TargetRate: 100, AchievedRate: 100, SelfCheckRate: 6000, UsualSelfCheckRate: 8000}, false, false, "", ""},
		{"self-check low, no history", Generator{TargetRate: 100, AchievedRate: 100, SelfCheckRate: 200}, false, false, "", ""},
		{"both: could not keep up on a busy machine", Generator{TargetRate: 100, AchievedRate: 50, SelfCheckRate: 1000, UsualSelfCheckRate: 8000, LagMS: late},
			true, true, "could not keep up", "12% of this machine's usual"},
		{"a stale verdict is cleared", Generator{TargetRate: 100, AchievedRate: 100, Saturated: true, Reason: "old", MachineBusy: true, MachineReason: "old"}, false, false, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := tc.g
			judgeGenerator(&g)
			assert.Equal(t, tc.saturated, g.Saturated, "saturated")
			assert.Equal(t, tc.busy, g.MachineBusy, "machine busy")
			if tc.reason == "" {
				assert.Empty(t, g.Reason)
			} else {
				assert.Contains(t, g.Reason, tc.reason)
			}
			if tc.busyWhy == "" {
				assert.Empty(t, g.MachineReason)
			} else {
				assert.Contains(t, g.MachineReason, tc.busyWhy)
			}
		})
	}
}

// TestRecordSelfCheck: the usual rate is the median of this machine's
// earlier self-checks once there are enough of them; the history keeps
// the newest ones.
func TestRecordSelfCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "self-check.json")
	var usuals []float64
	for _, r := range []float64{1000, 3000, 2000, 100, 5000} {
		u, err := recordSelfCheck(path, r)
		require.NoError(t, err)
		usuals = append(usuals, u)
	}
	assert.Equal(t, []float64{0, 0, 0, 2000, 2000}, usuals, "median of 1000, 3000, 2000; then of those and 100")
	for range keptSelfChecks + 5 {
		_, err := recordSelfCheck(path, 7000)
		require.NoError(t, err)
	}
	var h selfCheckHistory
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &h))
	assert.Len(t, h.Rates, keptSelfChecks)
	// Another machine's history is not this one's.
	h.Host += "-other"
	require.NoError(t, writeJSON(path, &h))
	u, err := recordSelfCheck(path, 10)
	require.NoError(t, err)
	assert.Zero(t, u)
}

// TestPacerAdapter: request n is due at HitTime(n); the attack stops at the
// end of the load or after the last request.
func TestPacerAdapter(t *testing.T) {
	l := scenarios.Load{Duration: scenarios.Duration(2 * time.Second), Pacer: scenarios.Pacer{Type: scenarios.PacerConstant, Rate: 10}}
	p := pacer{load: l}
	wait, stop := p.Pace(0, 0)
	assert.False(t, stop)
	assert.Zero(t, wait)
	wait, stop = p.Pace(50*time.Millisecond, 1)
	assert.False(t, stop)
	assert.Equal(t, 50*time.Millisecond, wait, "request 1 is due at 100ms")
	wait, stop = p.Pace(500*time.Millisecond, 2)
	assert.False(t, stop)
	assert.Zero(t, wait, "behind schedule: send now")
	_, stop = p.Pace(time.Second, 20)
	assert.True(t, stop, "all 20 requests sent")
	_, stop = p.Pace(2*time.Second, 3)
	assert.True(t, stop, "the load is over")
	assert.Equal(t, 10.0, p.Rate(time.Second))
}

// TestClassifyTransport: transport errors are grouped by kind.
func TestClassifyTransport(t *testing.T) {
	for in, want := range map[string]string{
		"": "unknown",
		"dial tcp 127.0.0.1:1: connect: connection refused":   "connection_refused",
		"read tcp: connection reset by peer":                  "connection_reset",
		"Post \"http://x\": EOF":                              "connection_reset",
		"context deadline exceeded (Client.Timeout exceeded)": "timeout",
		"tls: something":                                      "transport",
	} {
		assert.Equal(t, want, classifyTransport(in), in)
	}
}
