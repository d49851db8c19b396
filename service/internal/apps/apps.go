// Package apps holds wxpushd's per-app settings, parsed once at start-up
// into one App: the token manager, the workers, the callback endpoint and
// the webhook dispatchers all take it, so a new setting is added in one
// place instead of in a copy per package.
//
// An App holds secrets (the appsecret, the callback token and keys inside
// its Crypter, the webhook secrets) as wechat.Secret values or behind the
// Crypter, so printing or logging an App never shows them.
package apps

import (
	"fmt"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service/internal/pacing"
)

// App is one WeChat app the service sends for and receives pushes of.
type App struct {
	// Name is how API clients and URLs refer to the app; part of Redis
	// keys and metric labels.
	Name   string
	AppID  string        // WeChat's appid
	Secret wechat.Secret // the appsecret
	// TokenMode is the app's token endpoint ("stable" or "classic");
	// empty: the token manager's default.
	TokenMode string

	// Rate is the app's send rate across instances (zero: unlimited);
	// Reset is when its daily quota resets.
	Rate  pacing.Rate
	Reset pacing.Reset

	// Crypter holds the callback token, the appid and the EncodingAESKeys
	// of the app's callback endpoint; nil: the app has no endpoint.
	Crypter *wechat.Crypter
	// CallbackMode is the mode its pushes must come in (see package
	// callback); empty is plain.
	CallbackMode wechat.Mode

	// StatusWebhook receives the final status of each message;
	// EventWebhook receives every inbound push other than delivery
	// reports. A zero Webhook is none.
	StatusWebhook Webhook
	EventWebhook  Webhook

	// Replies are the passive replies to pushes, first match wins.
	Replies Replies
	// FollowerCheck: a send to a user the service knows does not follow
	// the account fails as not_following without calling WeChat.
	FollowerCheck bool
}

// Webhook is where a webhook goes and the secret it is signed with.
type Webhook struct {
	URL    string
	Secret wechat.Secret
}

// Enabled reports whether the webhook is configured.
func (w Webhook) Enabled() bool { return w.URL != "" }

// HasCallback reports whether the app has a callback endpoint.
func (a *App) HasCallback() bool { return a != nil && a.Crypter != nil }

// String names the app without any of its settings.
func (a *App) String() string { return fmt.Sprintf("app %s", a.Name) }

// Index maps app names to apps.
func Index(list []*App) map[string]*App {
	m := make(map[string]*App, len(list))
	for _, a := range list {
		m[a.Name] = a
	}
	return m
}
