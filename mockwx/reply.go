package mockwx

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"strings"

	"github.com/wxpush/wxpush/internal/wechat"
)

// Outcomes of a push (the "outcome" of GET /_mock/events).
const (
	// OutcomePending: not settled yet (waiting, in flight or between tries).
	OutcomePending = "pending"
	// OutcomeAcked: answered "success" or a 0-byte body (plain, or an
	// encrypted envelope whose content is empty or "success").
	OutcomeAcked = "acked"
	// OutcomeReplied: answered with a valid passive reply.
	OutcomeReplied = "replied"
	// OutcomeReplyInvalid: answered with something WeChat would show the
	// user as "该公众号暂时无法提供服务": bad XML, a wrong signature or
	// addressee, an unencrypted reply in safe mode. Not retried.
	OutcomeReplyInvalid = "reply_invalid"
	// OutcomeFailed: no answer in time after every try (or the push was
	// lost by a fault rule).
	OutcomeFailed = "failed"
)

// Reply is a passive reply as the mock decoded it (the "reply" of GET
// /_mock/events). MsgType is text, image, voice, video, music, news or
// transfer_customer_service; the other fields are those of that type.
type Reply struct {
	MsgType      string    `json:"msg_type"`
	Content      string    `json:"content,omitempty"`        // text
	MediaID      string    `json:"media_id,omitempty"`       // image, voice, video
	Title        string    `json:"title,omitempty"`          // video, music
	Description  string    `json:"description,omitempty"`    // video, music
	MusicURL     string    `json:"music_url,omitempty"`      // music
	HQMusicURL   string    `json:"hq_music_url,omitempty"`   // music
	ThumbMediaID string    `json:"thumb_media_id,omitempty"` // music
	Articles     []Article `json:"articles,omitempty"`       // news
	KfAccount    string    `json:"kf_account,omitempty"`     // transfer_customer_service
	// Encrypted reports that the reply came in an encrypted envelope.
	Encrypted bool `json:"encrypted"`
	// CreateTime is the reply's CreateTime as sent.
	CreateTime int64 `json:"create_time"`
}

// Article is one item of a news reply.
type Article struct {
	Title       string `json:"title,omitempty"`
	Description string `json:"description,omitempty"`
	PicURL      string `json:"pic_url,omitempty"`
	URL         string `json:"url,omitempty"`
}

// replyXML is every element a passive reply or its encrypted envelope may
// carry; elements are matched by name, in any order, CDATA optional.
type replyXML struct {
	XMLName      xml.Name `xml:"xml"`
	Encrypt      *string  `xml:"Encrypt"`
	MsgSignature string   `xml:"MsgSignature"`
	TimeStamp    string   `xml:"TimeStamp"`
	Nonce        string   `xml:"Nonce"`

	ToUserName   string `xml:"ToUserName"`
	FromUserName string `xml:"FromUserName"`
	CreateTime   string `xml:"CreateTime"`
	MsgType      string `xml:"MsgType"`
	Content      string `xml:"Content"`
	Image        struct {
		MediaID string `xml:"MediaId"`
	} `xml:"Image"`
	Voice struct {
		MediaID string `xml:"MediaId"`
	} `xml:"Voice"`
	Video struct {
		MediaID     string `xml:"MediaId"`
		Title       string `xml:"Title"`
		Description string `xml:"Description"`
	} `xml:"Video"`
	Music struct {
		Title        string `xml:"Title"`
		Description  string `xml:"Description"`
		MusicURL     string `xml:"MusicUrl"`
		HQMusicURL   string `xml:"HQMusicUrl"`
		ThumbMediaID string `xml:"ThumbMediaId"`
	} `xml:"Music"`
	ArticleCount string `xml:"ArticleCount"`
	Articles     []struct {
		Title       string `xml:"Title"`
		Description string `xml:"Description"`
		PicURL      string `xml:"PicUrl"`
		URL         string `xml:"Url"`
	} `xml:"Articles>item"`
	TransInfo struct {
		KfAccount string `xml:"KfAccount"`
	} `xml:"TransInfo"`
}

// replyJudge judges the answers to one push: who the reply must be
// addressed to and how it must be sealed.
type replyJudge struct {
	crypter    *wechat.Crypter
	mode       wechat.Mode
	openID     string // the push's FromUserName: the reply's ToUserName
	originalID string // the push's ToUserName: the reply's FromUserName
}

// judge classifies a 200 answer as acked, replied or reply_invalid, with
// the decoded reply or the reason it is invalid.
func (j replyJudge) judge(body []byte) (string, *Reply, string) {
	if isAck(body) {
		return OutcomeAcked, nil, ""
	}
	var outer replyXML
	if err := decodeReplyXML(body, &outer); err != nil {
		return OutcomeReplyInvalid, nil, err.Error()
	}
	r := outer
	encrypted := outer.Encrypt != nil
	if encrypted {
		if j.crypter == nil || !j.crypter.CanEncrypt() {
			return OutcomeReplyInvalid, nil, "encrypted reply but the app has no EncodingAESKey"
		}
		if outer.MsgSignature == "" || outer.TimeStamp == "" || outer.Nonce == "" {
			return OutcomeReplyInvalid, nil, "encrypted reply lacks MsgSignature, TimeStamp or Nonce (element names are case-sensitive)"
		}
		if !j.crypter.Verify(outer.MsgSignature, outer.TimeStamp, outer.Nonce, *outer.Encrypt) {
			return OutcomeReplyInvalid, nil, "MsgSignature does not match sha1(sort(token, TimeStamp, Nonce, Encrypt))"
		}
		plain, err := j.crypter.Decrypt(*outer.Encrypt)
		if err != nil {
			return OutcomeReplyInvalid, nil, "Encrypt does not decrypt: " + err.Error()
		}
		if isAck(plain) {
			return OutcomeAcked, nil, ""
		}
		r = replyXML{}
		if err := decodeReplyXML(plain, &r); err != nil {
			return OutcomeReplyInvalid, nil, "decrypted " + err.Error()
		}
	} else if j.mode == wechat.ModeSafe {
		return OutcomeReplyInvalid, nil, "unencrypted reply in safe mode"
	}
	rep, reason := j.check(&r)
	if rep == nil {
		return OutcomeReplyInvalid, nil, reason
	}
	rep.Encrypted = encrypted
	return OutcomeReplied, rep, ""
}

// isAck reports whether an answer acknowledges without a reply: 0 bytes
// or "success".
func isAck(body []byte) bool {
	return len(body) == 0 || string(bytes.TrimSpace(body)) == "success"
}

func decodeReplyXML(body []byte, v *replyXML) error {
	d := xml.NewDecoder(bytes.NewReader(body))
	d.Strict = true
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("reply is not XML with an <xml> root: %s", truncateReason(err.Error()))
	}
	return nil
}

// check validates a plaintext passive reply and decodes it.
func (j replyJudge) check(r *replyXML) (*Reply, string) {
	switch {
	case r.ToUserName != j.openID:
		return nil, fmt.Sprintf("ToUserName %q is not the user's openid %q", truncateReason(r.ToUserName), j.openID)
	case r.FromUserName != j.originalID:
		return nil, fmt.Sprintf("FromUserName %q is not the account's original id %q", truncateReason(r.FromUserName), j.originalID)
	case strings.TrimSpace(r.CreateTime) == "":
		return nil, "CreateTime is missing"
	}
	var ct int64
	if _, err := fmt.Sscan(strings.TrimSpace(r.CreateTime), &ct); err != nil {
		return nil, "CreateTime is not an integer"
	}
	rep := &Reply{MsgType: r.MsgType, CreateTime: ct}
	missing := func(what string) (*Reply, string) { return nil, r.MsgType + " reply without " + what }
	switch r.MsgType {
	case "text":
		if r.Content == "" {
			return missing("Content")
		}
		rep.Content = r.Content
	case "image":
		if r.Image.MediaID == "" {
			return missing("Image.MediaId")
		}
		rep.MediaID = r.Image.MediaID
	case "voice":
		if r.Voice.MediaID == "" {
			return missing("Voice.MediaId")
		}
		rep.MediaID = r.Voice.MediaID
	case "video":
		if r.Video.MediaID == "" {
			return missing("Video.MediaId")
		}
		rep.MediaID, rep.Title, rep.Description = r.Video.MediaID, r.Video.Title, r.Video.Description
	case "music":
		if r.Music.ThumbMediaID == "" {
			return missing("Music.ThumbMediaId")
		}
		m := r.Music
		rep.Title, rep.Description, rep.MusicURL, rep.HQMusicURL, rep.ThumbMediaID = m.Title, m.Description, m.MusicURL, m.HQMusicURL, m.ThumbMediaID
	case "news":
		if len(r.Articles) == 0 {
			return missing("Articles/item")
		}
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(r.ArticleCount), &n); err != nil || n != len(r.Articles) {
			return nil, fmt.Sprintf("news reply ArticleCount %q does not match its %d items", truncateReason(r.ArticleCount), len(r.Articles))
		}
		for _, a := range r.Articles {
			rep.Articles = append(rep.Articles, Article{Title: a.Title, Description: a.Description, PicURL: a.PicURL, URL: a.URL})
		}
	case "transfer_customer_service":
		rep.KfAccount = r.TransInfo.KfAccount
	case "":
		return nil, "MsgType is missing"
	default:
		return nil, fmt.Sprintf("MsgType %q is not a passive reply type (text, image, voice, video, music, news, transfer_customer_service)", truncateReason(r.MsgType))
	}
	return rep, ""
}

// truncateReason shortens text quoted in a reason.
func truncateReason(s string) string {
	const n = 120
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
