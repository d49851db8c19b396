package callback

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"net/url"
	"strconv"
	"time"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/apps"
	"github.com/wxpush/wxpush/service/internal/store"
)

// Results of an inbound push: the "result" label of
// metrics.EventsReceived.
const (
	EventRecorded  = "recorded"  // first seen: recorded (and queued for the event webhook)
	EventDuplicate = "duplicate" // WeChat's retry of a push already recorded
)

// knownTypes are the push types metrics name; any other is "other", so a
// signed push cannot grow the label set.
var knownTypes = map[string]bool{
	"subscribe": true, "unsubscribe": true, "SCAN": true, "LOCATION": true, "CLICK": true, "VIEW": true,
	"scancode_push": true, "scancode_waitmsg": true, "pic_sysphoto": true, "pic_photo_or_album": true,
	"pic_weixin": true, "location_select": true, "view_miniprogram": true, "MASSSENDJOBFINISH": true,
	"subscribe_msg_popup_event": true, "subscribe_msg_change_event": true, "subscribe_msg_sent_event": true,
	"text": true, "image": true, "voice": true, "video": true, "shortvideo": true, "location": true, "link": true,
}

// TypeLabel is the metrics label of a push type.
func TypeLabel(t string) string {
	if knownTypes[t] {
		return t
	}
	return "other"
}

// pushType is the type a push is known by: its Event for events, its
// MsgType for user messages.
func pushType(m *wechat.Message) string {
	if m.MsgType == wechat.MsgTypeEvent {
		return m.Event
	}
	return m.MsgType
}

// follow is the follower state change a push makes.
func follow(m *wechat.Message) string {
	if m.MsgType != wechat.MsgTypeEvent {
		return store.FollowNone
	}
	switch m.Event {
	case wechat.EventSubscribe:
		return store.FollowSubscribe
	case wechat.EventUnsubscribe:
		return store.FollowUnsubscribe
	}
	return store.FollowNone
}

// plaintext returns the XML of the push as WeChat wrote it: the body in
// plaintext mode, the decrypted Encrypt element otherwise. OpenCallback
// has verified both already.
func plaintext(cr *wechat.Crypter, q url.Values, body []byte) ([]byte, error) {
	if q.Get(wechat.ParamEncryptType) != wechat.EncryptTypeAES {
		return body, nil
	}
	outer, err := wechat.ParseMessage(body)
	if err != nil {
		return nil, err
	}
	return cr.Decrypt(outer.Encrypt)
}

// eventPayload builds the event webhook's body for a push.
func eventPayload(app string, msg *wechat.Message, plain []byte, id string, at time.Time) ([]byte, error) {
	fields, err := xmlFields(plain)
	if err != nil {
		return nil, err
	}
	ev := service.InboundEvent{
		Event: service.EventInbound, ID: id, App: app, Type: pushType(msg), MsgType: msg.MsgType,
		OpenID: msg.FromUserName, ToUserName: msg.ToUserName, CreateTime: msg.CreateTime,
		ReceivedAt: at.UTC(), Fields: fields,
	}
	if msg.UserMsgID != 0 {
		ev.MsgID = strconv.FormatInt(msg.UserMsgID, 10)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ev); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// xmlFields maps the children of the root element to their text, or, for
// an element with children, to an object of them; a name repeated among
// siblings maps to an array. wechat.ParseMessage has checked the XML's
// shape (depth, no DOCTYPE) already.
func xmlFields(data []byte) (map[string]any, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		if _, ok := tok.(xml.StartElement); ok {
			v, err := element(d)
			if err != nil {
				return nil, err
			}
			if m, ok := v.(map[string]any); ok {
				return m, nil
			}
			return map[string]any{}, nil
		}
	}
}

// element reads the content of an element whose start was read: its text,
// or a map of its child elements.
func element(d *xml.Decoder) (any, error) {
	var text bytes.Buffer
	var children map[string]any
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return nil, errors.New("unterminated element")
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.CharData:
			text.Write(t)
		case xml.StartElement:
			v, err := element(d)
			if err != nil {
				return nil, err
			}
			if children == nil {
				children = map[string]any{}
			}
			name := t.Name.Local
			switch prev := children[name].(type) {
			case nil:
				children[name] = v
			case []any:
				children[name] = append(prev, v)
			default:
				children[name] = []any{prev, v}
			}
		case xml.EndElement:
			if children != nil {
				return children, nil
			}
			return text.String(), nil
		}
	}
}

// reply returns the passive reply to a push: the text message of the
// first matching rule, sealed in the push's mode (encrypted and signed
// with msg_signature over the request's nonce when the push came
// encrypted); ok is false when no rule matches (answer "success").
func (r *Receiver) reply(app *apps.App, q url.Values, msg *wechat.Message) (body []byte, encrypted, ok bool, err error) {
	text, ok := app.Replies.Find(msg)
	if !ok {
		return nil, false, false, nil
	}
	now := r.o.Now().Unix()
	plain := apps.TextReply(msg, text, now)
	if q.Get(wechat.ParamEncryptType) != wechat.EncryptTypeAES {
		return plain, false, true, nil
	}
	sealed, err := app.Crypter.SealReply(plain, now, q.Get(wechat.ParamNonce))
	if err != nil {
		return nil, true, false, err
	}
	out, err := xml.Marshal(sealed)
	return out, true, err == nil, err
}
