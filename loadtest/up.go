package loadtest

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wxpush/wxpush/internal/redisurl"
	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/scenarios"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/client"
)

// The defaults of wxload up: fixed, so that the README's first message
// works as written.
const (
	// DevAPIKey is the API key of the local stack wxload up starts.
	DevAPIKey = "local-dev-key-0123456789abcdef"
	// DefaultUpAddr is the first wxpushd instance's address; instance i
	// listens on the next port but i.
	DefaultUpAddr = "127.0.0.1:8080"
	// DefaultUpMockAddr is the mock's address.
	DefaultUpMockAddr = "127.0.0.1:9000"
)

// upRecipients are openids the local stack's demo app treats as followers
// (every well-formed openid follows, except those its Followers list).
var upRecipients = []string{"oFollower-demo-0000000000001", "oFollower-demo-0000000000002", "oFollower-demo-0000000000003"}

// UpOptions configure Up. The zero value starts one instance on
// DefaultUpAddr, the mock on DefaultUpMockAddr, the Redis RedisAuto
// chooses and DevAPIKey.
type UpOptions struct {
	// Instances is the number of wxpushd instances (default 1, at most 8).
	Instances int
	// Addr is the first instance's listen address; instance i listens on
	// its port plus i. Port 0 gives each instance a free port. A missing
	// host is 127.0.0.1.
	Addr string
	// MockAddr is the mock's listen address.
	MockAddr string
	// RedisURL is as Options.RedisURL (RedisCluster: a private Redis
	// Cluster of 3 masters + 3 replicas).
	RedisURL string
	// ClusterPorts is as Options.ClusterPorts.
	ClusterPorts string
	// APIKey is the service's API key.
	APIKey string
	// LogDir keeps the logs and the private Redis's data; "" uses a
	// temporary directory removed at exit.
	LogDir string
	// StatusEvery is the least time between two status lines (default
	// 10 s); a line is printed only when the mock's counters moved.
	StatusEvery time.Duration
}

// Up starts the embedded stack with the demo app (delivery reports in safe
// mode), prints what a developer needs to use it (URLs, API key, apps,
// templates, recipients and a first message to paste) to out, and keeps it
// running until ctx is done, then stops it. Bad options are an error
// matching ErrUsage; an address already in use is an error that says so.
// Nothing starts in either case.
func Up(ctx context.Context, opts UpOptions, out io.Writer) error {
	opts.Instances = max(opts.Instances, 1)
	if opts.Instances > 8 {
		return usagef("--instances %d: at most 8", opts.Instances)
	}
	addrs, err := instanceAddrs(cmp.Or(opts.Addr, DefaultUpAddr), opts.Instances)
	if err != nil {
		return usagef("--addr %v", err)
	}
	mockAddr, err := normalizeAddr(cmp.Or(opts.MockAddr, DefaultUpMockAddr))
	if err != nil {
		return usagef("--mock-addr %v", err)
	}
	apiKey := cmp.Or(opts.APIKey, DevAPIKey)
	if len(apiKey) < 16 || strings.ContainsFunc(apiKey, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return usagef("--api-key: at least 16 printable ASCII characters, no space")
	}
	for _, a := range append([]string{mockAddr}, addrs...) {
		if err := checkFree(a); err != nil {
			return err
		}
	}
	logDir, keep := opts.LogDir, opts.LogDir != ""
	if !keep {
		if logDir, err = os.MkdirTemp("", "wxload-up-"); err != nil {
			return err
		}
		defer os.RemoveAll(logDir)
	}

	sc := scenarios.Scenario{
		Name:  "up",
		Stack: scenarios.Stack{Instances: opts.Instances},
		Mock:  scenarios.Mock{Apps: []scenarios.App{{Name: scenarios.DefaultAppName, CallbackMode: "safe"}}},
	}.WithDefaults()
	e, err := startEmbedded(ctx, sc, redisChoice{opts.RedisURL, opts.ClusterPorts}, logDir, 100_000, nil,
		fixedStack{ServiceAddrs: addrs, MockAddr: mockAddr, APIKey: apiKey})
	var stop func()
	if err == nil {
		stop = sync.OnceFunc(e.Close)
		defer stop()
		for _, u := range e.ServiceURLs() {
			if err = waitReady(ctx, u); err != nil {
				break
			}
		}
	}
	if err != nil {
		if ctx.Err() != nil { // Ctrl-C while starting
			fmt.Fprintln(out, "wxload up: stopped")
			return nil
		}
		return err
	}
	urls := e.ServiceURLs()
	_, redis := e.Describe()
	g := guide{
		services: urls, mockURL: e.Mock().BaseURL(), apiKey: apiKey,
		redis: redis + " " + redisurl.Redacted(e.redisURL()),
		logs:  logDir,
	}
	if !isLoopback(mockAddr) {
		g.warnings = append(g.warnings, "mockwx listens on "+mockAddr+": its admin API (a test tool, no token) is open to other machines")
	}
	if !keep {
		g.logs += " (removed at exit; --logs DIR keeps them)"
	}
	for _, a := range sc.Mock.Apps {
		g.apps = append(g.apps, guideApp{name: a.Name, app: e.MockApps()[a.Name]})
	}
	if err := g.write(out); err != nil {
		return err
	}
	fmt.Fprintln(out, "Running until Ctrl-C.")

	watchMock(ctx, e.Mock(), cmp.Or(opts.StatusEvery, 10*time.Second), out)
	fmt.Fprintln(out, "wxload up: stopping ...")
	stop()
	fmt.Fprintln(out, "wxload up: stopped")
	return nil
}

// usageError is bad usage: errors.Is(err, ErrUsage), without the prefix.
type usageError struct{ msg string }

func (e usageError) Error() string        { return e.msg }
func (e usageError) Is(target error) bool { return target == ErrUsage }

func usagef(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}

// Deployment is a running stack that wxload up describes instead of
// starting one (make up's compose stack).
type Deployment struct {
	Services  []string
	MockURL   string
	MockToken string
	APIKey    string
}

// Describe prints for a running deployment what Up prints for the stack it
// starts: the URLs, the API key, the apps the service and its mock share
// (read from both) and a first message to paste.
func Describe(ctx context.Context, d Deployment, out io.Writer) error {
	if len(d.Services) == 0 || d.MockURL == "" || d.APIKey == "" {
		return usagef("describing a running deployment needs --service, --mock and --api-key")
	}
	mockApps, err := mockwx.NewClient(d.MockURL, d.MockToken, nil).Apps(ctx)
	if err != nil {
		return fmt.Errorf("mock at %s: %w", d.MockURL, err)
	}
	c, err := client.New(d.Services[0], client.WithAPIKey(d.APIKey))
	if err != nil {
		return err
	}
	svcApps, err := c.Apps(ctx)
	if err != nil {
		return fmt.Errorf("service at %s: %w", d.Services[0], err)
	}
	g := guide{services: d.Services, mockURL: d.MockURL, mockGuarded: d.MockToken != "", apiKey: d.APIKey}
	for _, sa := range svcApps {
		for _, ma := range mockApps {
			if ma.AppID == sa.AppID {
				g.apps = append(g.apps, guideApp{name: sa.App, app: ma})
			}
		}
	}
	if len(g.apps) == 0 {
		return fmt.Errorf("the service at %s serves none of the apps of the mock at %s", d.Services[0], d.MockURL)
	}
	return g.write(out)
}

// guide is what Up and Describe print.
type guide struct {
	services    []string
	mockURL     string
	mockGuarded bool
	apiKey      string
	redis       string // "" in a deployment
	logs        string
	warnings    []string
	apps        []guideApp
}

type guideApp struct {
	name string // the app's name in wxpushd
	app  mockwx.App
}

func (g guide) write(w io.Writer) error {
	script, err := FirstMessageScript(g.services[0], g.apiKey, g.apps[0].name, g.apps[0].app)
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "wxpushd   %s\n", strings.Join(g.services, " "))
	fmt.Fprintf(&b, "API key   %s\n", g.apiKey)
	fmt.Fprintf(&b, "console   %s/console (sign in with the API key; a browser's view of the messages)\n", g.services[0])
	guard := "no admin token"
	if g.mockGuarded {
		guard = "admin token as given"
	}
	fmt.Fprintf(&b, "mockwx    %s (WeChat API; admin API %s/_mock/, %s)\n", g.mockURL, g.mockURL, guard)
	if g.redis != "" {
		fmt.Fprintf(&b, "redis     %s\n", g.redis)
	}
	if g.logs != "" {
		fmt.Fprintf(&b, "logs      %s\n", g.logs)
	}
	for _, w := range g.warnings {
		fmt.Fprintf(&b, "warning:  %s\n", w)
	}
	for _, ga := range g.apps {
		a := ga.app
		mode := "no delivery reports (no callback URL)"
		if a.CallbackURL != "" {
			mode = fmt.Sprintf("delivery reports in %s mode to %s", callbackMode(a.CallbackMode), a.CallbackURL)
		}
		fmt.Fprintf(&b, "\napp %q: appid %s, %s\n", ga.name, a.AppID, mode)
		for _, t := range a.Templates {
			var fields []string
			for _, f := range t.Fields {
				fields = append(fields, f.Key+":"+string(f.Type))
			}
			fmt.Fprintf(&b, "  template %-22s %s\n", t.ID, strings.Join(fields, " "))
		}
		if len(a.Followers.Only) > 0 {
			fmt.Fprintf(&b, "  recipients (only these follow): %s\n", strings.Join(a.Followers.Only[:min(len(a.Followers.Only), 3)], " "))
		} else {
			fmt.Fprintf(&b, "  recipients: any openid follows, e.g. %s\n", strings.Join(upRecipients, " "))
		}
		for _, o := range a.Followers.NotFollowing {
			fmt.Fprintf(&b, "    %s does not follow (a send fails: errcode 43004)\n", o)
		}
		for _, o := range a.Followers.Blocked {
			if !slices.Contains(a.Followers.NotFollowing, o) {
				fmt.Fprintf(&b, "    %s blocked the app (sent, then failed by its delivery report: reason user_block)\n", o)
			}
		}
	}
	fmt.Fprintf(&b, "\nSend a template message and read its status (paste into a shell):\n\n%s\n", script)
	_, err = io.WriteString(w, b.String())
	return err
}

// FirstMessageScript is the shell snippet that sends a valid message of
// the app's first template to a follower through the service at
// serviceURL, prints the answer, and reads the message's status. It works
// in bash and zsh as pasted (no comments: zsh does not take them
// interactively) and needs only curl and sed.
func FirstMessageScript(serviceURL, apiKey, appName string, a mockwx.App) (string, error) {
	if len(a.Templates) == 0 {
		return "", fmt.Errorf("app %s has no template", a.AppID)
	}
	data, err := sampleData(a.Templates[0])
	if err != nil {
		return "", err
	}
	touser := upRecipients[0]
	if len(a.Followers.Only) > 0 {
		touser = a.Followers.Only[0]
	}
	// The body by hand, to keep the data in the template's field order.
	var body strings.Builder
	body.WriteString("{")
	if appName != scenarios.DefaultAppName {
		fmt.Fprintf(&body, `"app":%s,`, jsonString(appName))
	}
	fmt.Fprintf(&body, `"touser":%s,"template_id":%s,"data":{`, jsonString(touser), jsonString(a.Templates[0].ID))
	for i, f := range a.Templates[0].Fields {
		if i > 0 {
			body.WriteString(",")
		}
		fmt.Fprintf(&body, `%s:{"value":%s}`, jsonString(f.Key), jsonString(data[f.Key].Value))
	}
	body.WriteString("}}")
	var check service.SendRequest
	if err := json.Unmarshal([]byte(body.String()), &check); err != nil {
		return "", fmt.Errorf("first message body: %w", err)
	}
	auth := shellQuote("Authorization: Bearer " + apiKey)
	u := strings.TrimRight(serviceURL, "/")
	return fmt.Sprintf(`resp=$(curl -sS -H %s -H 'Content-Type: application/json' \
  -d %s \
  %s/v1/messages)
printf '%%s\n' "$resp"
id=$(printf '%%s' "$resp" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
sleep 1
curl -sS -H %s %s/v1/messages/$id
`, auth, shellQuote(body.String()), u, auth, u), nil
}

// jsonString is s as a JSON string, with HTML characters as they are.
func jsonString(s string) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// instanceAddrs is the listen address of each of n instances: first, then
// the next ports (or port 0 for all when first's is 0).
func instanceAddrs(first string, n int) ([]string, error) {
	first, err := normalizeAddr(first)
	if err != nil {
		return nil, err
	}
	host, p, _ := net.SplitHostPort(first)
	port, _ := strconv.Atoi(p)
	if port != 0 && port+n-1 > 65535 {
		return nil, fmt.Errorf("%s: %d instances need ports up to %d", first, n, port+n-1)
	}
	addrs := make([]string, n)
	for i := range addrs {
		if port == 0 {
			addrs[i] = net.JoinHostPort(host, "0")
		} else {
			addrs[i] = net.JoinHostPort(host, strconv.Itoa(port+i))
		}
	}
	return addrs, nil
}

// normalizeAddr checks HOST:PORT and fills a missing host with 127.0.0.1.
func normalizeAddr(addr string) (string, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%q: want HOST:PORT, e.g. 127.0.0.1:8080", addr)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", fmt.Errorf("%q: the port must be a number from 0 to 65535", addr)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// isLoopback reports whether addr's host is a loopback address.
func isLoopback(addr string) bool {
	host, _, _ := net.SplitHostPort(addr)
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkFree says clearly when an address is taken, before anything starts.
func checkFree(addr string) error {
	if strings.HasSuffix(addr, ":0") {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("%s is already in use (another wxload up, or make up's compose stack? stop it with make down, or choose other ports with --addr and --mock-addr)", addr)
		}
		return fmt.Errorf("cannot listen on %s: %w", addr, err)
	}
	return ln.Close()
}

// waitReady waits until the instance at u answers /readyz with 200.
func waitReady(ctx context.Context, u string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"/readyz", nil)
		if err != nil {
			return err
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not become ready: %w", u, ctx.Err())
		case <-tick.C:
		}
	}
}

// watchMock prints a status line when the mock's counters moved, at most
// one per every, until ctx is done.
func watchMock(ctx context.Context, admin *mockwx.Client, every time.Duration, out io.Writer) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	var last mockwx.Stats
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		st, err := admin.Stats(ctx)
		if err != nil || st.SendCalls == last.SendCalls && st.Callbacks.Acked == last.Callbacks.Acked && st.Callbacks.Failed == last.Callbacks.Failed {
			continue
		}
		last = st
		fmt.Fprintf(out, "%s  mockwx: %d template sends (%d accepted), %d delivery reports acknowledged, %d unanswered\n",
			time.Now().Format("15:04:05"), st.SendCalls, st.Delivered, st.Callbacks.Acked, st.Callbacks.Failed)
	}
}
