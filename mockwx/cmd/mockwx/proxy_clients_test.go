package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/mockwx"
)

// proxyMock is mockwx started as a program, its CA kept under a private
// XDG_CONFIG_HOME as on a developer's machine.
type proxyMock struct {
	addr, caPath string
	admin        *mockwx.Client
}

func startProxyMock(t *testing.T) proxyMock {
	t.Helper()
	cfgHome := t.TempDir()
	m := startMock(t, map[string]string{mockwx.EnvSeed: "11", "XDG_CONFIG_HOME": cfgHome, "LOG_LEVEL": "warn"})
	addr, stdout := m.addr, m.stdout
	caPath := filepath.Join(cfgHome, "mockwx", "ca.pem")
	require.FileExists(t, caPath)
	assert.Contains(t, stdout.String(), "HTTPS_PROXY=http://"+addr+", trust CA "+caPath, "the banner says how to use the proxy")
	return proxyMock{addr: addr, caPath: caPath, admin: mockwx.NewClient("http://"+addr, "", nil)}
}

// clientEnv is this process's environment without any proxy or CA
// setting, plus extra.
func clientEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(name) {
		case "HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE":
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// runClient runs cmd and checks what every client prints: a token, a send
// answered errcode 0, and its own one entry in the ledger, which the
// mock's admin API confirms.
func runClient(t *testing.T, m proxyMock, touser string, cmd *exec.Cmd) string {
	t.Helper()
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s\n%s", cmd, out)
	text := string(out)
	t.Logf("%s printed:\n%s", filepath.Base(cmd.Path), text)
	assert.Contains(t, text, "token: ok")
	assert.Regexp(t, `send: errcode 0 msgid [1-9][0-9]*`, text)
	assert.Contains(t, text, "ledger: 1 entry for "+touser)
	page, err := m.admin.Messages(t.Context(), 0, 1000)
	require.NoError(t, err)
	var mine int
	for _, e := range page.Messages {
		if e.ToUser == touser {
			mine++
		}
	}
	assert.Equal(t, 1, mine, "the mock's ledger holds the client's one send")
	return text
}

// TestProxyWithUnmodifiedGoClient: a Go program that knows nothing of the
// mock (net/http's default client, https://api.weixin.qq.com URLs) reaches
// it with HTTPS_PROXY and SSL_CERT_FILE only.
func TestProxyWithUnmodifiedGoClient(t *testing.T) {
	m := startProxyMock(t)
	bin := filepath.Join(t.TempDir(), "goclient")
	build := exec.Command("go", "build", "-o", bin, "./testdata/goclient")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)
	cmd := exec.Command(bin, mockwx.DemoAppID, mockwx.DemoAppSecret, "oProxy-go-client")
	cmd.Env = clientEnv("HTTPS_PROXY=http://"+m.addr, "SSL_CERT_FILE="+m.caPath)
	runClient(t, m, "oProxy-go-client", cmd)
}

// TestProxyWithCurl: curl --proxy --cacert, nothing else.
func TestProxyWithCurl(t *testing.T) {
	curl := lookOrSkip(t, "curl")
	m := startProxyMock(t)
	do := func(args ...string) string {
		cmd := exec.Command(curl, append([]string{"-sS", "--fail", "--max-time", "10", "--proxy", "http://" + m.addr, "--cacert", m.caPath}, args...)...)
		cmd.Env = clientEnv()
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s\n%s", cmd, out)
		return string(out)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	require.NoError(t, json.Unmarshal([]byte(do("https://api.weixin.qq.com/cgi-bin/token?grant_type=client_credential&appid="+mockwx.DemoAppID+"&secret="+mockwx.DemoAppSecret)), &tok))
	require.NotEmpty(t, tok.AccessToken)
	sent := do("-H", "Content-Type: application/json", "-d",
		`{"touser":"oProxy-curl-client","template_id":"notice","data":{"keyword1":{"value":"from curl"},"keyword2":{"value":"x"}}}`,
		"https://api.weixin.qq.com/cgi-bin/message/template/send?access_token="+url.QueryEscape(tok.AccessToken))
	assert.Regexp(t, `"errcode":0`, sent)
	var page mockwx.LedgerPage
	require.NoError(t, json.Unmarshal([]byte(do("https://api.weixin.qq.com/_mock/messages?limit=1000")), &page))
	var mine int
	for _, e := range page.Messages {
		if e.ToUser == "oProxy-curl-client" {
			mine++
		}
	}
	assert.Equal(t, 1, mine)

	// curl without the CA refuses the mock's certificate (exit 60) and the
	// mock's ledger does not move.
	cmd := exec.Command(curl, "-sS", "--max-time", "10", "--proxy", "http://"+m.addr,
		"https://api.weixin.qq.com/cgi-bin/token?grant_type=client_credential&appid="+mockwx.DemoAppID+"&secret="+mockwx.DemoAppSecret)
	cmd.Env = clientEnv("SSL_CERT_FILE=/dev/null", "CURL_CA_BUNDLE=/dev/null")
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "%s", out)
	st, err := m.admin.Stats(t.Context())
	require.NoError(t, err)
	assert.EqualValues(t, 1, st.TokenCalls, "the untrusting curl minted no token")

	// A CONNECT elsewhere: curl reports the proxy's 403.
	cmd = exec.Command(curl, "-sS", "--max-time", "10", "--proxy", "http://"+m.addr, "--cacert", m.caPath, "https://example.com/")
	cmd.Env = clientEnv()
	out, err = cmd.CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "403")
}

// TestProxyWithPythonUrllib: Python's standard library with HTTPS_PROXY and
// SSL_CERT_FILE (OpenSSL's variable, which urllib's default context reads).
func TestProxyWithPythonUrllib(t *testing.T) {
	py := lookOrSkip(t, "python3")
	m := startProxyMock(t)
	cmd := exec.Command(py, "testdata/pyclient.py", mockwx.DemoAppID, mockwx.DemoAppSecret, "oProxy-python-client")
	cmd.Env = clientEnv("HTTPS_PROXY=http://"+m.addr, "SSL_CERT_FILE="+m.caPath)
	runClient(t, m, "oProxy-python-client", cmd)
}

// TestProxyWithJava: the JVM's own proxy properties and a truststore made
// from the CA with keytool; the program is java.net.http only.
func TestProxyWithJava(t *testing.T) {
	java := lookOrSkip(t, "java")
	keytool := lookOrSkip(t, "keytool")
	m := startProxyMock(t)
	store := filepath.Join(t.TempDir(), "mockwx-truststore.p12")
	kt := exec.Command(keytool, "-importcert", "-noprompt", "-alias", "mockwx", "-file", m.caPath,
		"-keystore", store, "-storetype", "PKCS12", "-storepass", "changeit")
	out, err := kt.CombinedOutput()
	require.NoError(t, err, "%s", out)
	host, port, _ := strings.Cut(m.addr, ":")
	cmd := exec.Command(java, "-Dhttps.proxyHost="+host, "-Dhttps.proxyPort="+port,
		"-Djavax.net.ssl.trustStore="+store, "-Djavax.net.ssl.trustStorePassword=changeit",
		"testdata/JavaClient.java", mockwx.DemoAppID, mockwx.DemoAppSecret, "oProxy-java-client")
	cmd.Env = clientEnv()
	runClient(t, m, "oProxy-java-client", cmd)
}

// lookOrSkip finds a client program; without it the test is skipped, but
// under CI=true (where .ci/run installs them) it fails.
func lookOrSkip(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil && name == "java" {
		// Single-file source programs need Java 11 or later.
		if out, verr := exec.Command(path, "-version").CombinedOutput(); verr != nil || regexp.MustCompile(`version "(1\.|9|10)[."]`).Match(out) {
			err = fmt.Errorf("java too old: %s", out)
		}
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is needed under CI=true: %v", name, err)
		}
		t.Skipf("%s not usable here (%v): skipped", name, err)
	}
	return path
}
