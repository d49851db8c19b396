package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx/mockwxtest"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/client"
	"github.com/wxpush/wxpush/service/wxpushd"
)

const dashboardFile = "grafana/wxpush.json"

// prometheusOwn are series Prometheus itself writes for every target:
// rules may use them although wxpushd does not export them.
var prometheusOwn = []string{"up"}

// query is one PromQL expression and where it comes from.
type query struct {
	where, expr string
}

// grafanaVars are the Grafana variables in the dashboard's expressions
// that are not PromQL: each becomes a duration before parsing.
var grafanaVars = regexp.MustCompile(`\$__(rate_interval|interval|range)\b`)

// labelValues is Grafana's label_values(metric, label) variable query.
var labelValues = regexp.MustCompile(`^label_values\((.+),\s*[a-zA-Z_][a-zA-Z0-9_]*\)$`)

// dashboardQueries returns every expression of the dashboard: the panels'
// targets (rows' nested panels too) and the query variables.
func dashboardQueries(t *testing.T) []query {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	var d struct {
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	require.NoError(t, json.Unmarshal(raw, &d), dashboardFile)
	var qs []query
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				qs = append(qs, query{fmt.Sprintf("%s: panel %q target %s", dashboardFile, p.Title, tg.RefID), tg.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		require.NoError(t, json.Unmarshal(v.Query, &q), "variable %s", v.Name)
		m := labelValues.FindStringSubmatch(q.Query)
		require.NotNil(t, m, "variable %s: want label_values(metric, label), got %q", v.Name, q.Query)
		qs = append(qs, query{fmt.Sprintf("%s: variable %s", dashboardFile, v.Name), m[1]})
	}
	return qs
}

type panel struct {
	Title   string `json:"title"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

// ruleQueries returns every expression of the alert rules.
func ruleQueries(t *testing.T) []query {
	t.Helper()
	var qs []query
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			qs = append(qs, query{fmt.Sprintf("%s: %s%s", alertsFile, r.Alert, r.Record), r.Expr})
		}
	}
	return qs
}

// metricNames parses expr as PromQL and returns the metric names its
// selectors name.
func metricNames(expr string) ([]string, error) {
	node, err := parser.NewParser(parser.Options{}).ParseExpr(grafanaVars.ReplaceAllString(expr, "5m"))
	if err != nil {
		return nil, err
	}
	var names []string
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == model.MetricNameLabel && name == "" {
				name = m.Value
			}
		}
		names = append(names, name)
		return nil
	})
	if len(names) == 0 {
		return nil, errors.New("selects no metric")
	}
	return names, nil
}

// unknownNames checks every query against the exported names: it returns
// one line per query that does not parse, selects no metric by name, or
// names a metric not in exported.
func unknownNames(qs []query, exported map[string]bool) []string {
	var bad []string
	for _, q := range qs {
		names, err := metricNames(q.expr)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", q.where, err))
			continue
		}
		for _, n := range names {
			switch {
			case n == "":
				bad = append(bad, fmt.Sprintf("%s: a selector without a metric name", q.where))
			case !exported[n]:
				bad = append(bad, fmt.Sprintf("%s: %s is not exported by wxpushd", q.where, n))
			}
		}
	}
	return bad
}

// TestUnknownNamesCatches: the check refuses a renamed metric, a typo in
// PromQL and a selector without a name.
func TestUnknownNamesCatches(t *testing.T) {
	exported := map[string]bool{"wxpush_messages_sent_total": true, "wxpush_send_duration_seconds_bucket": true}
	for _, tc := range []struct {
		expr string
		bad  string // "" when the query is good
	}{
		{`sum(rate(wxpush_messages_sent_total{app=~"$app"}[$__rate_interval]))`, ""},
		{`histogram_quantile(0.99, sum by (le) (rate(wxpush_send_duration_seconds_bucket[5m])))`, ""},
		{`sum(rate(wxpush_messages_delivered_total[5m]))`, "wxpush_messages_delivered_total is not exported"},
		{`wxpush_messages_sent_total / on (app) wxpush_message_sent_total`, "wxpush_message_sent_total is not exported"},
		{`sum(rate(wxpush_messages_sent_total[5m])`, "unclosed"},
		{`{app="shop"}`, "a selector without a metric name"},
		{`vector(1)`, "selects no metric"},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			bad := unknownNames([]query{{"q", tc.expr}}, exported)
			if tc.bad == "" {
				assert.Empty(t, bad)
				return
			}
			require.Len(t, bad, 1)
			assert.Contains(t, bad[0], tc.bad)
		})
	}
}

// TestMetricNamesExported starts a wxpushd in-process (embedded store,
// mockwx as WeChat), sends a message through it, makes Redis fail for a
// moment, then scrapes /metrics: every metric name in the alert rules and
// the dashboard must be one of the scraped names (a histogram's _bucket,
// _sum and _count included), so renaming a metric breaks this test rather
// than an operator's dashboard.
func TestMetricNamesExported(t *testing.T) {
	exported := scrapeLiveWxpushd(t)
	for _, n := range prometheusOwn {
		exported[n] = true
	}
	qs := append(ruleQueries(t), dashboardQueries(t)...)
	require.GreaterOrEqual(t, len(qs), 30, "the rules and the dashboard's expressions")
	used := map[string]bool{}
	for _, q := range qs {
		names, _ := metricNames(q.expr)
		for _, n := range names {
			used[n] = true
		}
	}
	bad := unknownNames(qs, exported)
	assert.Empty(t, bad, "expressions naming metrics wxpushd does not export")
	// The scrape is not vacuous: the families the alerts rest on are there.
	for _, n := range []string{"wxpush_app_paused", "wxpush_messages_failed_total", "wxpush_queue_oldest_age_seconds",
		"wxpush_delivery_reports_total", "wxpush_token_daily_budget", "wxpush_token_refreshes_total",
		"wxpush_redis_errors_total", "wxpush_store_resets_total", "wxpush_callbacks_total",
		"wxpush_send_duration_seconds_bucket", "wxpush_accept_to_sent_seconds_bucket", "wxpush_send_attempts_total"} {
		assert.True(t, used[n], "%s is used by a rule or a panel", n)
		assert.True(t, exported[n], "%s is exported", n)
	}
	names := make([]string, 0, len(used))
	for n := range used {
		names = append(names, n)
	}
	sort.Strings(names)
	t.Logf("%d expressions use %d metric names, all exported: %s", len(qs), len(names), strings.Join(names, " "))
}

// scrapeLiveWxpushd runs the service and returns the metric names its
// /metrics serves.
func scrapeLiveWxpushd(t *testing.T) map[string]bool {
	t.Helper()
	mock := mockwxtest.NewServer(t, mockwxtest.Options{})
	const key = "deploy-test-api-key-0123456789"
	cfg := wxpushd.Config{
		Addr: "127.0.0.1:0", WeChatBaseURL: mock.URL, APIKeys: []wechat.Secret{key},
		Apps: []wxpushd.AppConfig{{
			Name: "default", AppID: mock.App.AppID, Secret: wechat.Secret(mock.App.Secret),
			CallbackToken: "deploytesttoken", EncodingAESKey: "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
		}},
		ShutdownTimeout: 5 * time.Second, LogLevel: "error",
	}
	s, err := wxpushd.New(t.Context(), cfg, wxpushd.Options{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-stopped:
		case <-time.After(30 * time.Second):
			t.Error("wxpushd did not stop")
		}
		s.Close()
	})

	// One message, followed until WeChat (the mock) accepted it: the send
	// attempt, latency and API request series exist from then on.
	c, err := client.New(s.URL(), client.WithAPIKey(key))
	require.NoError(t, err)
	acc, _, err := c.Send(t.Context(), service.SendRequest{
		ToUser: "oUser-deploy-00000001", TemplateID: "order_shipped",
		Data: map[string]service.DataValue{
			"thing1": {Value: "巧克力礼盒"}, "character_string2": {Value: "SO-2026-000123"},
			"time3": {Value: "2026年11月23日 15:01"}, "phrase4": {Value: "已发货"},
		},
	}, "")
	require.NoError(t, err)
	waitFor(t, "the message to be sent", func() bool {
		m, err := c.Get(t.Context(), acc.ID)
		require.NoError(t, err)
		require.NotEqual(t, service.StatusFailed, m.Status, "the message failed: %+v", m.LastError)
		return m.Status == service.StatusSent || m.Status == service.StatusDelivered
	})

	// Redis fails for a moment: wxpush_redis_errors_total{op} appears.
	mini := s.EmbeddedRedis()
	require.NotNil(t, mini, "the test runs on the embedded store")
	mini.SetError("ERR deploy test: Redis fails")
	var families map[string]*dto.MetricFamily
	waitFor(t, "a Redis error to be counted", func() bool {
		families = scrape(t, s.URL())
		return families["wxpush_redis_errors_total"] != nil
	})
	mini.SetError("")

	names := map[string]bool{}
	for name, f := range families {
		names[name] = true
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			names[name+"_bucket"], names[name+"_sum"], names[name+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			names[name+"_sum"], names[name+"_count"] = true, true
		}
	}
	return names
}

// scrape reads /metrics in the text format.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/metrics", nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	return fams
}

// waitFor polls cond every 20 ms until it holds, or fails after 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 20 s for %s", what)
		}
		<-tick.C
	}
}
