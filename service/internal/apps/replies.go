package apps

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/wxpush/wxpush/internal/wechat"
)

// Reply is one passive reply rule, as configured:
//
//	{"on": "subscribe", "text": "Welcome"}                  an event
//	{"on": "CLICK", "event_key": "MENU_HELP", "text": "..."} an event with that EventKey
//	{"keyword": "help", "text": "..."}                      a text message that is exactly "help"
//	{"keyword": "order ", "match": "prefix", "text": "..."} a text message that starts with "order "
//
// The text is sent verbatim as a text message: it is never evaluated as
// a template.
type Reply struct {
	// On is the event name (Event of a MsgType=event push), matched
	// exactly; WeChat's case counts (subscribe, SCAN, CLICK, VIEW...).
	On string `yaml:"on,omitempty" json:"on,omitempty"`
	// EventKey, with On, also requires the push's EventKey to be exactly
	// this; empty: any.
	EventKey string `yaml:"event_key,omitempty" json:"event_key,omitempty"`
	// Keyword matches the Content of a text message.
	Keyword string `yaml:"keyword,omitempty" json:"keyword,omitempty"`
	// Match is how Keyword matches: exact (the default) or prefix.
	Match string `yaml:"match,omitempty" json:"match,omitempty"`
	// Text is the reply's Content.
	Text string `yaml:"text" json:"text"`
}

// Match kinds of Reply.Match.
const (
	MatchExact  = "exact"
	MatchPrefix = "prefix"
)

// MaxReplyText bounds a reply's text in bytes: WeChat refuses longer text
// messages.
const MaxReplyText = 2048

// noReplyEvents are the pushes no reply can reach: the user left
// (unsubscribe), or WeChat reports a job (answer success).
var noReplyEvents = map[string]bool{
	wechat.EventUnsubscribe: true, wechat.EventTemplateSendJobFinish: true, "MASSSENDJOBFINISH": true,
}

// Replies are an app's reply rules in order; the first that matches wins.
type Replies []Reply

// Validate checks every rule; the error names the rule (replies[i]) and
// what is wrong with it.
func (rs Replies) Validate() error {
	var errs []error
	for i, r := range rs {
		field := func(name string) string { return "replies[" + strconv.Itoa(i) + "]." + name }
		switch {
		case r.On == "" && r.Keyword == "":
			errs = append(errs, fmt.Errorf("replies[%d]: needs \"on\" (an event) or \"keyword\" (a text message)", i))
		case r.On != "" && r.Keyword != "":
			errs = append(errs, fmt.Errorf("replies[%d]: \"on\" and \"keyword\" exclude each other", i))
		case noReplyEvents[r.On]:
			errs = append(errs, fmt.Errorf("%s %q: WeChat shows no reply to this push", field("on"), r.On))
		}
		if r.EventKey != "" && r.On == "" {
			errs = append(errs, fmt.Errorf("%s: only with \"on\"", field("event_key")))
		}
		switch r.Match {
		case "", MatchExact, MatchPrefix:
			if r.Match != "" && r.Keyword == "" {
				errs = append(errs, fmt.Errorf("%s: only with \"keyword\"", field("match")))
			}
		default:
			errs = append(errs, fmt.Errorf("%s %q: must be exact or prefix", field("match"), clip(r.Match)))
		}
		switch {
		case r.Text == "":
			errs = append(errs, fmt.Errorf("%s: required (an empty reply makes WeChat show an error to the user)", field("text")))
		case len(r.Text) > MaxReplyText:
			errs = append(errs, fmt.Errorf("%s: %d bytes, at most %d", field("text"), len(r.Text), MaxReplyText))
		}
		for _, f := range []struct{ name, v string }{{"on", r.On}, {"event_key", r.EventKey}, {"keyword", r.Keyword}, {"text", r.Text}} {
			if err := xmlText(f.v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", field(f.name), err))
			}
		}
	}
	return errors.Join(errs...)
}

// xmlText checks that s is UTF-8 holding only characters XML 1.0 allows.
func xmlText(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	for _, r := range s {
		if !(r == '\t' || r == '\n' || r == '\r' || (r >= 0x20 && r <= 0xD7FF) || (r >= 0xE000 && r <= 0xFFFD) || (r >= 0x10000 && r <= 0x10FFFF)) {
			return fmt.Errorf("holds the character %U, which XML cannot carry", r)
		}
	}
	return nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// Find returns the text of the first rule that matches msg, and whether
// one did. Delivery reports and unsubscribes never match.
func (rs Replies) Find(msg *wechat.Message) (string, bool) {
	if msg.MsgType == wechat.MsgTypeEvent && noReplyEvents[msg.Event] {
		return "", false
	}
	for _, r := range rs {
		switch {
		case r.On != "":
			if msg.MsgType == wechat.MsgTypeEvent && msg.Event == r.On && (r.EventKey == "" || msg.EventKey == r.EventKey) {
				return r.Text, true
			}
		case msg.MsgType == wechat.MsgTypeText:
			if r.Match == MatchPrefix && strings.HasPrefix(msg.Content, r.Keyword) || msg.Content == r.Keyword {
				return r.Text, true
			}
		}
	}
	return "", false
}

// TextReply renders the passive reply XML of a text message from the
// account (the push's ToUserName) to the user (the push's FromUserName):
// every string in CDATA, with "]]>" split across two sections so that no
// text can end a section early; the text is copied, never interpreted.
func TextReply(push *wechat.Message, text string, createTime int64) []byte {
	var b strings.Builder
	b.Grow(len(text) + 256)
	b.WriteString("<xml><ToUserName>")
	cdata(&b, push.FromUserName)
	b.WriteString("</ToUserName><FromUserName>")
	cdata(&b, push.ToUserName)
	b.WriteString("</FromUserName><CreateTime>")
	b.WriteString(strconv.FormatInt(createTime, 10))
	b.WriteString("</CreateTime><MsgType><![CDATA[text]]></MsgType><Content>")
	cdata(&b, text)
	b.WriteString("</Content></xml>")
	return []byte(b.String())
}

// cdata writes s as CDATA sections: "]]>" inside s becomes "]]" ending one
// section and ">" starting the next.
func cdata(b *strings.Builder, s string) {
	b.WriteString("<![CDATA[")
	b.WriteString(strings.ReplaceAll(s, "]]>", "]]]]><![CDATA[>"))
	b.WriteString("]]>")
}
