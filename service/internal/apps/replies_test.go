package apps_test

import (
	"encoding/xml"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service/internal/apps"
)

func TestRepliesValidate(t *testing.T) {
	tests := []struct {
		name  string
		rules apps.Replies
		want  string // a part of the error; empty: valid
	}{
		{"event", apps.Replies{{On: "subscribe", Text: "hi"}}, ""},
		{"event key", apps.Replies{{On: "CLICK", EventKey: "K", Text: "hi"}}, ""},
		{"keyword exact", apps.Replies{{Keyword: "help", Text: "hi"}}, ""},
		{"keyword prefix", apps.Replies{{Keyword: "help", Match: "prefix", Text: "hi"}}, ""},
		{"neither", apps.Replies{{Text: "hi"}}, `replies[0]: needs "on"`},
		{"both", apps.Replies{{On: "subscribe", Keyword: "x", Text: "hi"}}, "exclude each other"},
		{"no text", apps.Replies{{On: "subscribe"}}, "replies[0].text: required"},
		{"long text", apps.Replies{{On: "subscribe", Text: strings.Repeat("x", apps.MaxReplyText+1)}}, "at most 2048"},
		{"bad match", apps.Replies{{Keyword: "x", Match: "regex", Text: "hi"}}, `replies[0].match "regex"`},
		{"match without keyword", apps.Replies{{On: "subscribe", Match: "prefix", Text: "hi"}}, "replies[0].match: only with"},
		{"event key without on", apps.Replies{{Keyword: "x", EventKey: "K", Text: "hi"}}, "replies[0].event_key: only with"},
		{"unsubscribe", apps.Replies{{On: "unsubscribe", Text: "bye"}}, "shows no reply"},
		{"report", apps.Replies{{On: "TEMPLATESENDJOBFINISH", Text: "x"}}, "shows no reply"},
		{"control char", apps.Replies{{On: "subscribe", Text: "a\x00b"}}, "replies[0].text: holds the character U+0000"},
		{"bad utf8", apps.Replies{{On: "subscribe", Text: "a\xffb"}}, "not valid UTF-8"},
		{"second rule", apps.Replies{{On: "subscribe", Text: "ok"}, {Keyword: "x"}}, "replies[1].text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.rules.Validate()
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestRepliesFind(t *testing.T) {
	rules := apps.Replies{
		{On: "subscribe", Text: "welcome"},
		{On: "CLICK", EventKey: "MENU_HELP", Text: "menu help"},
		{Keyword: "help", Text: "exact help"},
		{Keyword: "order ", Match: "prefix", Text: "order status"},
		{On: "SCAN", Text: "scanned"},
	}
	ev := func(event, key string) *wechat.Message {
		return &wechat.Message{MsgType: wechat.MsgTypeEvent, Event: event, EventKey: key}
	}
	text := func(s string) *wechat.Message { return &wechat.Message{MsgType: wechat.MsgTypeText, Content: s} }
	tests := []struct {
		name string
		msg  *wechat.Message
		want string // empty: no reply
	}{
		{"subscribe", ev("subscribe", ""), "welcome"},
		{"subscribe by qr", ev("subscribe", "qrscene_1"), "welcome"},
		{"click with key", ev("CLICK", "MENU_HELP"), "menu help"},
		{"click other key", ev("CLICK", "OTHER"), ""},
		{"event case counts", ev("scan", ""), ""},
		{"scan", ev("SCAN", "1"), "scanned"},
		{"exact keyword", text("help"), "exact help"},
		{"exact keyword is exact", text("help me"), ""},
		{"prefix keyword", text("order 42"), "order status"},
		{"prefix needs the prefix", text("my order 42"), ""},
		{"unsubscribe", ev("unsubscribe", ""), ""},
		{"keyword never matches an event", ev("help", ""), ""},
		{"image", &wechat.Message{MsgType: "image"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := rules.Find(tt.msg)
			require.Equal(t, tt.want != "", ok, "match for %+v", tt.msg)
			require.Equal(t, tt.want, got)
		})
	}
}

// TestTextReplyIsVerbatim: whatever the text holds (a CDATA end, markup,
// template syntax), the reply parses back to exactly that text.
func TestTextReplyIsVerbatim(t *testing.T) {
	push := &wechat.Message{ToUserName: "gh_0123456789ab", FromUserName: "oUser]]><x>", MsgType: wechat.MsgTypeEvent, Event: "subscribe"}
	for _, text := range []string{
		"plain", "a]]>b", "]]>", "]]]]>>", "<xml><Content>x</Content></xml>", "{{.Secret}} ${HOME} %s", "line1\nline2 & <b>",
	} {
		t.Run(text, func(t *testing.T) {
			out := apps.TextReply(push, text, 1718000001)
			var got struct {
				ToUserName   string `xml:"ToUserName"`
				FromUserName string `xml:"FromUserName"`
				CreateTime   int64  `xml:"CreateTime"`
				MsgType      string `xml:"MsgType"`
				Content      string `xml:"Content"`
			}
			require.NoError(t, xml.Unmarshal(out, &got), "reply %s", out)
			require.Equal(t, text, got.Content, "reply %s", out)
			require.Equal(t, push.FromUserName, got.ToUserName)
			require.Equal(t, push.ToUserName, got.FromUserName)
			require.Equal(t, int64(1718000001), got.CreateTime)
			require.Equal(t, "text", got.MsgType)
			_, err := wechat.ParseMessage(out)
			require.NoError(t, err, "the service's own parser takes the reply")
		})
	}
}
