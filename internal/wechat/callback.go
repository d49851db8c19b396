package wechat

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
)

// Message types and events of callback pushes.
const (
	MsgTypeText  = "text"
	MsgTypeEvent = "event"

	EventTemplateSendJobFinish = "TEMPLATESENDJOBFINISH"
	EventSubscribe             = "subscribe"
	EventUnsubscribe           = "unsubscribe"
)

// Status values of the TEMPLATESENDJOBFINISH event, exactly as WeChat sends
// them (note the inconsistent space after the colon).
const (
	StatusSuccess      = "success"
	StatusUserBlock    = "failed:user block"
	StatusSystemFailed = "failed: system failed"
	StatusFreqLimit    = "failed:freq limit" // undocumented, observed in 2024
)

// Failure reasons derived from a delivery Status.
const (
	ReasonUserBlock    = "user_block"
	ReasonSystemFailed = "system_failed"
	ReasonFreqLimit    = "freq_limit"
	ReasonFailed       = "failed" // an unknown status; keep the raw string
)

// DeliveryResult is what a TEMPLATESENDJOBFINISH Status means for a message.
type DeliveryResult struct {
	Delivered bool
	Reason    string // empty when Delivered
}

// ParseDeliveryStatus maps a Status to a result. It tolerates a space after
// "failed:" (one SDK's variant); every status other than "success" is a
// failure, with ReasonFailed when it is not one WeChat is known to send.
func ParseDeliveryStatus(status string) DeliveryResult {
	if status == StatusSuccess {
		return DeliveryResult{Delivered: true}
	}
	rest, ok := strings.CutPrefix(status, "failed:")
	if ok {
		switch strings.TrimSpace(rest) {
		case "user block":
			return DeliveryResult{Reason: ReasonUserBlock}
		case "system failed":
			return DeliveryResult{Reason: ReasonSystemFailed}
		case "freq limit":
			return DeliveryResult{Reason: ReasonFreqLimit}
		}
	}
	return DeliveryResult{Reason: ReasonFailed}
}

// Message is a callback push: a user message, an event, or (with only
// ToUserName and Encrypt) a safe-mode envelope. Compatible mode carries the
// plaintext fields and Encrypt together. It marshals with CDATA text as
// WeChat does; empty fields are left out.
type Message struct {
	XMLName      xml.Name `xml:"xml"`
	ToUserName   string   `xml:"ToUserName"`   // the account's original id, gh_...
	FromUserName string   `xml:"FromUserName"` // the user's openid
	CreateTime   int64    `xml:"CreateTime"`   // unix seconds
	MsgType      string   `xml:"MsgType"`
	Content      string   `xml:"Content"`  // text messages
	UserMsgID    int64    `xml:"MsgId"`    // user messages: tag MsgId
	Event        string   `xml:"Event"`    // events
	EventKey     string   `xml:"EventKey"` // events with a key
	MsgID        int64    `xml:"MsgID"`    // TEMPLATESENDJOBFINISH: tag MsgID
	Status       string   `xml:"Status"`   // TEMPLATESENDJOBFINISH
	Encrypt      string   `xml:"Encrypt"`  // safe and compatible modes
}

// DedupKey returns the key WeChat's retries of this push share: the MsgID of
// a delivery report with the openid it names (so that a report naming
// another user cannot take the real report's place), the MsgId of a user
// message, else FromUserName and CreateTime (with the event name, so two
// events of one second differ).
func (m *Message) DedupKey() string {
	switch {
	case m.MsgType == MsgTypeEvent && m.Event == EventTemplateSendJobFinish:
		return "msgid:" + strconv.FormatInt(m.MsgID, 10) + ":" + m.FromUserName
	case m.UserMsgID != 0:
		return "usermsgid:" + strconv.FormatInt(m.UserMsgID, 10)
	default:
		return "event:" + m.FromUserName + ":" + strconv.FormatInt(m.CreateTime, 10) + ":" + m.Event
	}
}

// MarshalXML writes the message as WeChat does: <xml>, string fields in
// CDATA, numbers bare, empty fields omitted.
func (m Message) MarshalXML(e *xml.Encoder, _ xml.StartElement) error {
	start := xml.StartElement{Name: xml.Name{Local: "xml"}}
	if err := e.EncodeToken(start); err != nil {
		return err
	}
	fields := []struct {
		name string
		text string
		num  int64
	}{
		{"ToUserName", m.ToUserName, 0},
		{"FromUserName", m.FromUserName, 0},
		{"CreateTime", "", m.CreateTime},
		{"MsgType", m.MsgType, 0},
		{"Content", m.Content, 0},
		{"MsgId", "", m.UserMsgID},
		{"Event", m.Event, 0},
		{"EventKey", m.EventKey, 0},
		{"MsgID", "", m.MsgID},
		{"Status", m.Status, 0},
		{"Encrypt", m.Encrypt, 0},
	}
	for _, f := range fields {
		var err error
		switch {
		case f.text != "":
			err = e.EncodeElement(struct {
				Text string `xml:",cdata"`
			}{f.text}, xml.StartElement{Name: xml.Name{Local: f.name}})
		case f.num != 0:
			err = e.EncodeElement(f.num, xml.StartElement{Name: xml.Name{Local: f.name}})
		}
		if err != nil {
			return err
		}
	}
	return e.EncodeToken(start.End())
}

// Bytes returns the message's XML.
func (m *Message) Bytes() ([]byte, error) { return xml.Marshal(m) }

// Callback XML limits: what ParseMessage accepts at most.
const (
	MaxCallbackBytes = 64 << 10
	maxXMLDepth      = 5 // <xml><SendPicsInfo><PicList><item><PicMd5Sum> (pic_* menu events)
)

// ErrMalformedXML wraps every ParseMessage failure.
var ErrMalformedXML = errors.New("wechat: malformed callback XML")

// ParseMessage parses a callback body. It is strict and safe on hostile
// input: at most MaxCallbackBytes, one <xml> root element, nesting of at
// most a few levels, and no DOCTYPE, entity declarations or processing
// instructions other than the XML declaration (so no entity expansion).
func ParseMessage(data []byte) (*Message, error) {
	if len(data) > MaxCallbackBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMalformedXML, len(data), MaxCallbackBytes)
	}
	if err := checkXML(data); err != nil {
		return nil, err
	}
	var m Message
	if err := xml.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedXML, err)
	}
	return &m, nil
}

// checkXML walks the tokens once to enforce the structural limits before
// decoding.
func checkXML(data []byte) error {
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	depth, roots := 0, 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrMalformedXML, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				roots++
				if roots > 1 {
					return fmt.Errorf("%w: more than one root element", ErrMalformedXML)
				}
				if t.Name.Local != "xml" {
					return fmt.Errorf("%w: root element is <%s>, want <xml>", ErrMalformedXML, truncate(t.Name.Local, 32))
				}
			}
			depth++
			if depth > maxXMLDepth {
				return fmt.Errorf("%w: nested deeper than %d levels", ErrMalformedXML, maxXMLDepth)
			}
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 0 && len(bytes.TrimSpace(t)) > 0 {
				return fmt.Errorf("%w: text outside the root element", ErrMalformedXML)
			}
		case xml.Directive:
			return fmt.Errorf("%w: DOCTYPE and entity declarations are not allowed", ErrMalformedXML)
		case xml.ProcInst:
			if t.Target != "xml" {
				return fmt.Errorf("%w: processing instruction <?%s?> not allowed", ErrMalformedXML, truncate(t.Target, 32))
			}
		}
	}
	if roots == 0 {
		return fmt.Errorf("%w: no <xml> element", ErrMalformedXML)
	}
	return nil
}

// Mode is an account's callback message mode.
type Mode string

// The callback modes, named as in MOCKWX_CALLBACK_MODE.
const (
	ModePlain  Mode = "plain"  // 明文模式: plaintext XML, URL signature only
	ModeCompat Mode = "compat" // 兼容模式: plaintext fields plus Encrypt
	ModeSafe   Mode = "safe"   // 安全模式: ToUserName and Encrypt only
)

// ParseMode parses a mode name; the empty string is ModePlain.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "", ModePlain:
		return ModePlain, nil
	case ModeCompat, ModeSafe:
		return Mode(s), nil
	}
	return "", fmt.Errorf("wechat: callback mode %q: must be plain, compat or safe", s)
}

// Callback query parameters.
const (
	ParamSignature    = "signature"
	ParamTimestamp    = "timestamp"
	ParamNonce        = "nonce"
	ParamOpenID       = "openid"
	ParamEncryptType  = "encrypt_type"
	ParamMsgSignature = "msg_signature"
	ParamEchoStr      = "echostr"
	EncryptTypeAES    = "aes"
)

// SealCallback builds the request WeChat POSTs to a callback URL for msg in
// mode: the query parameters (signature, timestamp, nonce, openid, and in
// the encrypted modes encrypt_type=aes and msg_signature) and the XML body.
// Encrypted modes need an EncodingAESKey and seal the Crypter's appid.
func (c *Crypter) SealCallback(msg *Message, mode Mode, timestamp int64, nonce string) (url.Values, []byte, error) {
	ts := strconv.FormatInt(timestamp, 10)
	q := url.Values{}
	q.Set(ParamSignature, c.Sign(ts, nonce))
	q.Set(ParamTimestamp, ts)
	q.Set(ParamNonce, nonce)
	if msg.FromUserName != "" {
		q.Set(ParamOpenID, msg.FromUserName)
	}
	inner := *msg
	inner.Encrypt = ""
	plain, err := inner.Bytes()
	if err != nil {
		return nil, nil, err
	}
	if mode == ModePlain {
		return q, plain, nil
	}
	enc, err := c.Encrypt(plain)
	if err != nil {
		return nil, nil, err
	}
	outer := Message{ToUserName: msg.ToUserName, Encrypt: enc}
	if mode == ModeCompat {
		outer = inner
		outer.Encrypt = enc
	}
	body, err := outer.Bytes()
	if err != nil {
		return nil, nil, err
	}
	q.Set(ParamEncryptType, EncryptTypeAES)
	q.Set(ParamMsgSignature, c.Sign(ts, nonce, enc))
	return q, body, nil
}

// VerifyURL checks a URL-verification GET (signature over token, timestamp,
// nonce) and returns the echostr to answer with. For Official Accounts the
// echostr is plaintext in every mode.
func (c *Crypter) VerifyURL(q url.Values) (string, error) {
	sig, ts, nonce := q.Get(ParamSignature), q.Get(ParamTimestamp), q.Get(ParamNonce)
	if sig == "" || ts == "" || nonce == "" {
		return "", ErrMissingSigParam
	}
	if !c.Verify(sig, ts, nonce) {
		return "", ErrSignature
	}
	return q.Get(ParamEchoStr), nil
}

// OpenCallback verifies and decodes a callback POST. It always checks the
// URL signature. With encrypt_type=aes it also checks msg_signature over the
// Encrypt element, decrypts it (current key, then previous), checks the
// appid trailer and that the inner ToUserName equals the outer one, and
// returns the decrypted message. Without it the body is the plaintext
// message. Callers check the timestamp window themselves.
func (c *Crypter) OpenCallback(q url.Values, body []byte) (*Message, error) {
	sig, ts, nonce := q.Get(ParamSignature), q.Get(ParamTimestamp), q.Get(ParamNonce)
	if sig == "" || ts == "" || nonce == "" {
		return nil, ErrMissingSigParam
	}
	if !c.Verify(sig, ts, nonce) {
		return nil, ErrSignature
	}
	outer, err := ParseMessage(body)
	if err != nil {
		return nil, err
	}
	if q.Get(ParamEncryptType) != EncryptTypeAES {
		return outer, nil
	}
	if outer.Encrypt == "" {
		return nil, ErrMissingEncrypt
	}
	msgSig := q.Get(ParamMsgSignature)
	if msgSig == "" {
		return nil, ErrMissingSigParam
	}
	if !c.Verify(msgSig, ts, nonce, outer.Encrypt) {
		return nil, ErrSignature
	}
	plain, err := c.Decrypt(outer.Encrypt)
	if err != nil {
		return nil, err
	}
	inner, err := ParseMessage(plain)
	if err != nil {
		return nil, err
	}
	if inner.ToUserName != outer.ToUserName {
		return nil, ErrToUserMismatch
	}
	return inner, nil
}

// EncryptedReply is a passive reply in safe mode.
type EncryptedReply struct {
	Encrypt      string
	MsgSignature string
	TimeStamp    int64
	Nonce        string
}

// SealReply encrypts a passive reply with the current key; nonce should
// echo the request's nonce.
func (c *Crypter) SealReply(msg []byte, timestamp int64, nonce string) (*EncryptedReply, error) {
	enc, err := c.Encrypt(msg)
	if err != nil {
		return nil, err
	}
	return &EncryptedReply{
		Encrypt:      enc,
		MsgSignature: c.Sign(strconv.FormatInt(timestamp, 10), nonce, enc),
		TimeStamp:    timestamp,
		Nonce:        nonce,
	}, nil
}

// MarshalXML writes the reply in WeChat's format.
func (r EncryptedReply) MarshalXML(e *xml.Encoder, _ xml.StartElement) error {
	type cdata struct {
		Text string `xml:",cdata"`
	}
	v := struct {
		XMLName      xml.Name `xml:"xml"`
		Encrypt      cdata    `xml:"Encrypt"`
		MsgSignature cdata    `xml:"MsgSignature"`
		TimeStamp    int64    `xml:"TimeStamp"`
		Nonce        cdata    `xml:"Nonce"`
	}{Encrypt: cdata{r.Encrypt}, MsgSignature: cdata{r.MsgSignature}, TimeStamp: r.TimeStamp, Nonce: cdata{r.Nonce}}
	return e.Encode(v)
}

// UnmarshalXML reads a reply in WeChat's format.
func (r *EncryptedReply) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	var v struct {
		Encrypt      string `xml:"Encrypt"`
		MsgSignature string `xml:"MsgSignature"`
		TimeStamp    int64  `xml:"TimeStamp"`
		Nonce        string `xml:"Nonce"`
	}
	if err := d.DecodeElement(&v, &start); err != nil {
		return err
	}
	*r = EncryptedReply(v)
	return nil
}

// OpenReply verifies a passive reply's signature and decrypts it.
func (c *Crypter) OpenReply(r *EncryptedReply) ([]byte, error) {
	if !c.Verify(r.MsgSignature, strconv.FormatInt(r.TimeStamp, 10), r.Nonce, r.Encrypt) {
		return nil, ErrSignature
	}
	return c.Decrypt(r.Encrypt)
}
