package mockwxcontainer

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode"

	"github.com/wxpush/wxpush/mockwx"
)

// Option configures Run. A bad option makes Run fail before it talks to
// Docker, naming the option.
type Option func(*settings) error

// settings are what the options set.
type settings struct {
	config      []byte // the MOCKWX_CONFIG file (YAML or JSON); nil: none
	seed        *int64
	callbackURL string
	adminToken  string
	image       string
	network     string
	aliases     []string
	caCert      []byte // WithCA: the proxy mode's CA; nil: the container makes its own
	caKey       []byte
}

// newSettings applies opts in order and reports every bad one.
func newSettings(opts []Option) (settings, error) {
	var s settings
	var errs []error
	for _, o := range opts {
		if o == nil {
			errs = append(errs, errors.New("mockwxcontainer: a nil Option"))
			continue
		}
		if err := o(&s); err != nil {
			errs = append(errs, fmt.Errorf("mockwxcontainer: %w", err))
		}
	}
	return s, errors.Join(errs...)
}

// WithConfig programs the mock with cfg (apps, templates, followers,
// settings, preloaded fault rules): the file MOCKWX_CONFIG names. cfg is
// validated as the mock would. It replaces an earlier WithConfig or
// WithConfigYAML.
func WithConfig(cfg mockwx.Config) Option {
	return func(s *settings) error {
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("WithConfig: %w", err)
		}
		// JSON is YAML to the mock, and every field of Config has a json tag.
		data, err := json.Marshal(cfg)
		if err != nil {
			return fmt.Errorf("WithConfig: %w", err)
		}
		s.config = data
		return nil
	}
}

// WithConfigYAML programs the mock with a YAML (or JSON) config file's
// content, as `mockwx -config` reads it: strict, unknown keys are errors.
// It is parsed and validated here, so mistakes surface before a container
// starts. It replaces an earlier WithConfig or WithConfigYAML.
func WithConfigYAML(data []byte) Option {
	return func(s *settings) error {
		if _, err := mockwx.ParseConfig(data); err != nil {
			return fmt.Errorf("WithConfigYAML: %w", err)
		}
		s.config = append([]byte(nil), data...)
		return nil
	}
}

// WithSeed makes every random choice of the mock (tokens, msgids, fault
// probabilities, latencies) follow seed (MOCKWX_SEED); without it the
// mock seeds from the time.
func WithSeed(seed int64) Option {
	return func(s *settings) error {
		s.seed = &seed
		return nil
	}
}

// WithCallbackURL sets the demo app's callback URL (MOCKWX_CALLBACK_URL):
// where TEMPLATESENDJOBFINISH delivery reports and simulated users' events
// are pushed. The container must reach it: a service in a container on the
// WithNetwork network by its alias, or this host at HostAddress. Apps in
// the config carry their own callback_url.
func WithCallbackURL(rawURL string) Option {
	return func(s *settings) error {
		u, err := url.Parse(rawURL)
		if err != nil {
			return fmt.Errorf("WithCallbackURL: %w", err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("WithCallbackURL: %q is not an absolute http or https URL", rawURL)
		}
		s.callbackURL = rawURL
		return nil
	}
}

// WithAdminToken guards the admin API under /_mock/ with a bearer token
// (MOCKWX_ADMIN_TOKEN); Container.Admin sends it. /_mock/ca.pem stays
// open.
func WithAdminToken(token string) Option {
	return func(s *settings) error {
		if token == "" {
			return errors.New("WithAdminToken: empty token (leave the option out for an unguarded admin API)")
		}
		if strings.IndexFunc(token, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
			return errors.New("WithAdminToken: the token holds a space or a control character (it travels in an Authorization header)")
		}
		s.adminToken = token
		return nil
	}
}

// WithCA gives the mock the CA of its HTTPS proxy mode (PEM certificate
// and key; mockwx.NewCA or LoadOrCreateCA make one, and mockwx's CA from
// ~/.config/mockwx works too), so that a truststore built once (a JVM's,
// a system bundle in an image) trusts every container. Without it each
// container generates a CA of its own. The pair is checked here; the key
// is copied into the container, readable by the mock's user.
func WithCA(certPEM, keyPEM []byte) Option {
	return func(s *settings) error {
		if _, err := mockwx.ParseCA(certPEM, keyPEM); err != nil {
			return fmt.Errorf("WithCA: %w", err)
		}
		s.caCert, s.caKey = append([]byte(nil), certPEM...), append([]byte(nil), keyPEM...)
		return nil
	}
}

// WithImage runs a prebuilt mockwx image from the local image cache (it is
// never pulled), e.g. "wxpush/mockwx:local", which `make images` builds in
// the wxpush repository. Without it Run builds the image from the wxpush
// source that the current module uses, once per process.
func WithImage(image string) Option {
	return func(s *settings) error {
		if image == "" || strings.ContainsFunc(image, unicode.IsSpace) {
			return fmt.Errorf("WithImage: %q is not an image reference", image)
		}
		s.image = image
		return nil
	}
}

// WithNetwork attaches the container to the Docker network name (which
// must exist), reachable there under aliases (default "mockwx"), so that
// a service under test in another container on that network reaches the
// mock at Container.NetworkURL. The port is still published on the host.
func WithNetwork(name string, aliases ...string) Option {
	return func(s *settings) error {
		if name == "" {
			return errors.New("WithNetwork: empty network name")
		}
		for _, a := range aliases {
			if a == "" || strings.ContainsFunc(a, func(r rune) bool { return unicode.IsSpace(r) || r == ':' || r == '/' }) {
				return fmt.Errorf("WithNetwork: %q is not a host name", a)
			}
		}
		if len(aliases) == 0 {
			aliases = []string{DefaultAlias}
		}
		s.network, s.aliases = name, append([]string(nil), aliases...)
		return nil
	}
}
