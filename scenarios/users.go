package scenarios

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Users simulates the account's users during the load: events and
// messages pushed through mockwx's POST /_mock/events to wxpushd's
// callback route, and a share of the recipients who unfollow mid-run
// (sends to them must then stop at the service). In the embedded stack
// wxload receives the service's event webhook itself and accounts for
// every push end to end (summary.json "events").
type Users struct {
	// Rate is the user events per second over the attack, spread over the
	// apps by their weight.
	Rate float64 `yaml:"rate" json:"rate" jsonschema:"minimum=0"`
	// Mix is the event types and their weights (default: every type that
	// a following user sends, CLICK and text twice as often).
	Mix []EventShare `yaml:"mix,omitempty" json:"mix,omitempty"`
	// Unfollow makes a share of the recipients unfollow at a moment of the
	// run (and optionally follow again later).
	Unfollow *Unfollow `yaml:"unfollow,omitempty" json:"unfollow,omitempty"`
}

// EventShare is one event type of the users' mix and its weight.
type EventShare struct {
	// Type is subscribe, SCAN, CLICK, VIEW, LOCATION, text or image.
	Type   string  `yaml:"type" json:"type" jsonschema:"enum=subscribe,enum=SCAN,enum=CLICK,enum=VIEW,enum=LOCATION,enum=text,enum=image"`
	Weight float64 `yaml:"weight,omitempty" json:"weight,omitempty" jsonschema:"minimum=0"`
}

// Share is the type's weight: Weight, or 1 when it is not set.
func (e EventShare) Share() float64 {
	if e.Weight == 0 {
		return 1
	}
	return e.Weight
}

// Unfollow is the users' unfollow wave.
type Unfollow struct {
	// Share of the recipients who unfollow (0..0.9): the first ones of the
	// pool, in every app.
	Share float64 `yaml:"share" json:"share" jsonschema:"minimum=0,maximum=0.9"`
	// At is when they unfollow, after the start of the load.
	At Duration `yaml:"at" json:"at"`
	// Refollow, when set, is when they follow again.
	Refollow Duration `yaml:"refollow,omitempty" json:"refollow,omitzero"`
}

// The event types a user's mix may hold (unsubscribe comes from Unfollow).
var userEventTypes = []string{"subscribe", "SCAN", "CLICK", "VIEW", "LOCATION", "text", "image"}

// DefaultUserMix is the mix when Users.Mix is empty.
var DefaultUserMix = []EventShare{
	{Type: "subscribe", Weight: 1}, {Type: "SCAN", Weight: 1}, {Type: "CLICK", Weight: 2}, {Type: "VIEW", Weight: 1},
	{Type: "LOCATION", Weight: 1}, {Type: "text", Weight: 2}, {Type: "image", Weight: 1},
}

// EffectiveMix is Mix, or DefaultUserMix when it is empty.
func (u Users) EffectiveMix() []EventShare {
	if len(u.Mix) == 0 {
		return DefaultUserMix
	}
	return u.Mix
}

// Reply is one passive reply rule of an app (wxpushd's per-app
// `replies`): the first rule that matches a push answers it with Text.
type Reply struct {
	// On matches an event by name (subscribe, SCAN, CLICK, VIEW, ...).
	On string `yaml:"on,omitempty" json:"on,omitempty"`
	// EventKey narrows On to pushes with that EventKey.
	EventKey string `yaml:"event_key,omitempty" json:"event_key,omitempty"`
	// Keyword matches a text message: exactly, or as a prefix when Match
	// is "prefix".
	Keyword string `yaml:"keyword,omitempty" json:"keyword,omitempty"`
	Match   string `yaml:"match,omitempty" json:"match,omitempty" jsonschema:"enum=exact,enum=prefix"`
	// Text is the reply, rendered verbatim.
	Text string `yaml:"text" json:"text"`
}

// Matches reports whether the rule answers a push of type typ (an event's
// name, or "text") with eventKey or content.
func (r Reply) Matches(typ, eventKey, content string) bool {
	switch {
	case r.Keyword != "":
		if typ != "text" {
			return false
		}
		if r.Match == "prefix" {
			return strings.HasPrefix(content, r.Keyword)
		}
		return content == r.Keyword
	case r.On != "":
		return typ == r.On && (r.EventKey == "" || r.EventKey == eventKey)
	}
	return false
}

func (u *Users) check(c *checker, apps []App, d time.Duration) {
	if u == nil {
		return
	}
	if math.IsNaN(u.Rate) || u.Rate <= 0 || u.Rate > MaxRate {
		c.add("load.users.rate", "%v events/s is out of range (above 0 to %d)", u.Rate, MaxRate)
	}
	var total float64
	seen := map[string]bool{}
	for i, m := range u.Mix {
		p := fmt.Sprintf("load.users.mix[%d]", i)
		if !slices.Contains(userEventTypes, m.Type) {
			c.add(p+".type", "%q: use one of %s (unsubscribe comes from load.users.unfollow)", m.Type, strings.Join(userEventTypes, ", "))
		}
		if seen[m.Type] {
			c.add(p+".type", "%q is listed twice", m.Type)
		}
		seen[m.Type] = true
		if m.Weight < 0 || math.IsNaN(m.Weight) {
			c.add(p+".weight", "must not be negative")
		}
		total += m.Share()
	}
	if len(u.Mix) > 0 && total <= 0 {
		c.add("load.users.mix", "the weights add up to 0")
	}
	if f := u.Unfollow; f != nil {
		if math.IsNaN(f.Share) || f.Share <= 0 || f.Share > 0.9 {
			c.add("load.users.unfollow.share", "%v is out of range (above 0 to 0.9)", f.Share)
		}
		if f.At.D() < 0 || (d > 0 && f.At.D() >= d) {
			c.add("load.users.unfollow.at", "%s must fall inside the load (%s)", f.At, d)
		}
		if f.Refollow != 0 && (f.Refollow.D() <= f.At.D() || (d > 0 && f.Refollow.D() >= d)) {
			c.add("load.users.unfollow.refollow", "%s must fall after unfollow.at (%s) and inside the load (%s)", f.Refollow, f.At, d)
		}
	}
	if len(apps) == 0 {
		apps = []App{{Name: DefaultAppName}}
	}
	for i, a := range apps {
		if a.CallbackMode == "off" {
			c.add(fmt.Sprintf("mock.apps[%d].callback_mode", i), "users push to the app's callback URL: off cannot take load.users")
		}
	}
}

func checkReplies(c *checker, p string, rs []Reply) {
	for j, r := range rs {
		q := fmt.Sprintf("%s.replies[%d]", p, j)
		switch {
		case r.On == "" && r.Keyword == "":
			c.add(q, "set on (an event) or keyword (a text message)")
		case r.On != "" && r.Keyword != "":
			c.add(q, "set on or keyword, not both")
		}
		if r.Match != "" && r.Match != "exact" && r.Match != "prefix" {
			c.add(q+".match", "%q: use exact or prefix", r.Match)
		}
		if r.Match != "" && r.Keyword == "" {
			c.add(q+".match", "applies to keyword rules only")
		}
		if r.EventKey != "" && r.On == "" {
			c.add(q+".event_key", "applies to on rules only")
		}
		if r.Text == "" {
			c.add(q+".text", "is required")
		}
	}
}
