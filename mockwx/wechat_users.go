package mockwx

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/wxpush/wxpush/internal/wechat"
)

// WeChat paths of the user, template-list and customer-service APIs.
const (
	PathUserInfo     = "/cgi-bin/user/info"
	PathUserGet      = "/cgi-bin/user/get"
	PathTemplateList = "/cgi-bin/template/get_all_private_template"
	PathCustomSend   = "/cgi-bin/message/custom/send"
)

// Errcodes of the customer-service API.
const (
	codeInvalidMsgType = 40008 // invalid message type
	codeOutOfWindow    = 45015 // response out of time limit or subscription is canceled
)

// userInfo is the body of GET /cgi-bin/user/info for a follower. The
// profile fields WeChat stopped returning in 2021 are left out.
type userInfo struct {
	Subscribe      int    `json:"subscribe"`
	OpenID         string `json:"openid"`
	Language       string `json:"language"`
	SubscribeTime  int64  `json:"subscribe_time"`
	Remark         string `json:"remark"`
	GroupID        int    `json:"groupid"`
	TagIDList      []int  `json:"tagid_list"`
	SubscribeScene string `json:"subscribe_scene"`
	QRScene        int64  `json:"qr_scene"`
	QRSceneStr     string `json:"qr_scene_str"`
}

// userInfoUnfollowed is the body for a non-follower: nothing else can be
// pulled.
type userInfoUnfollowed struct {
	Subscribe int    `json:"subscribe"`
	OpenID    string `json:"openid"`
}

// userList is the body of GET /cgi-bin/user/get. Data is nil (absent) on
// the page after the last and for an account without followers.
type userList struct {
	Total      int           `json:"total"`
	Count      int           `json:"count"`
	Data       *userListData `json:"data,omitempty"`
	NextOpenID string        `json:"next_openid"`
}

type userListData struct {
	OpenID []string `json:"openid"`
}

// templateList is the body of GET /cgi-bin/template/get_all_private_template.
type templateList struct {
	TemplateList []templateItem `json:"template_list"`
}

type templateItem struct {
	TemplateID      string `json:"template_id"`
	Title           string `json:"title"`
	PrimaryIndustry string `json:"primary_industry"`
	DeputyIndustry  string `json:"deputy_industry"`
	Content         string `json:"content"`
	Example         string `json:"example"`
}

// customMessage is the body of POST /cgi-bin/message/custom/send.
type customMessage struct {
	ToUser  string `json:"touser"`
	MsgType string `json:"msgtype"`
	Text    *struct {
		Content string `json:"content"`
	} `json:"text,omitempty"`
}

// apiCall checks the token and runs the fault rules for endpoint; it
// reports whether the handler should go on.
func (s *Server) apiCall(w http.ResponseWriter, r *http.Request, endpoint Endpoint, toUser string) (*appState, Decision, bool) {
	app, code := s.checkToken(r)
	if code != 0 {
		writeWeChat(w, s.errResponse(code, ""))
		return nil, Decision{}, false
	}
	d := s.faults.Decide(Call{Endpoint: endpoint, AppID: app.AppID, ToUser: toUser})
	if s.applyFault(w, r, d, nil) {
		return nil, Decision{}, false
	}
	return app, d, true
}

func (s *Server) handleUserInfo(w http.ResponseWriter, r *http.Request) {
	openid := r.URL.Query().Get("openid")
	app, d, ok := s.apiCall(w, r, EndpointUserInfo, openid)
	if !ok {
		return
	}
	if !wellFormedOpenID(openid) {
		s.breakResponse(w, r, d, s.errResponse(wechat.CodeInvalidOpenID, ""))
		return
	}
	s.mu.Lock()
	var resp any = userInfoUnfollowed{OpenID: openid}
	if app.follows(openid) {
		info := userInfo{Subscribe: 1, OpenID: openid, Language: "zh_CN", SubscribeTime: s.started.Unix(),
			TagIDList: []int{}, SubscribeScene: "ADD_SCENE_SEARCH"}
		if u := app.users[openid]; u != nil && !u.subscribedAt.IsZero() {
			info.SubscribeTime = u.subscribedAt.Unix()
			if u.qrScene != "" {
				info.SubscribeScene = "ADD_SCENE_QR_CODE"
				if n, err := parseScene(u.qrScene); err == nil {
					info.QRScene = n
				} else {
					info.QRSceneStr = u.qrScene
				}
			}
		}
		resp = info
	}
	s.mu.Unlock()
	s.stats.countErrcode(0)
	s.breakResponse(w, r, d, resp)
}

// parseScene reads a numeric scene_id (32-bit unsigned).
func parseScene(s string) (int64, error) {
	var n int64
	if s == "" || len(s) > 10 {
		return 0, errNotScene
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, errNotScene
		}
		n = n*10 + int64(c-'0')
	}
	if n > 1<<32-1 {
		return 0, errNotScene
	}
	return n, nil
}

var errNotScene = errors.New("not a scene_id")

// handleUserGet lists followers WeChat's way: the followers the mock knows
// (followers.only, then users who followed by a simulated subscribe, in
// order), up to the page size; next_openid is the last of a page, and the
// call after the last page answers count 0, next_openid "" and no data.
func (s *Server) handleUserGet(w http.ResponseWriter, r *http.Request) {
	app, d, ok := s.apiCall(w, r, EndpointUserGet, "")
	if !ok {
		return
	}
	next := r.URL.Query().Get("next_openid")
	s.mu.Lock()
	start := 0
	if next != "" {
		i, known := app.listIndex[next]
		if !known {
			s.mu.Unlock()
			s.breakResponse(w, r, d, s.errResponse(wechat.CodeInvalidOpenID, "invalid next_openid"))
			return
		}
		start = i + 1
	}
	total := 0
	var page []string
	for i, o := range app.listOrder {
		if !app.follows(o) {
			continue
		}
		total++
		if i >= start && len(page) < s.settings.UserListPageSize {
			page = append(page, o)
		}
	}
	s.mu.Unlock()
	resp := userList{Total: total, Count: len(page)}
	if len(page) > 0 {
		resp.Data = &userListData{OpenID: page}
		resp.NextOpenID = page[len(page)-1]
	}
	s.stats.countErrcode(0)
	s.breakResponse(w, r, d, resp)
}

func (s *Server) handleTemplateList(w http.ResponseWriter, r *http.Request) {
	app, d, ok := s.apiCall(w, r, EndpointTemplateList, "")
	if !ok {
		return
	}
	resp := templateList{TemplateList: []templateItem{}}
	for _, t := range app.Templates {
		var content, example []string
		for _, f := range t.Fields {
			content = append(content, f.Key+"：{{"+f.Key+".DATA}}")
			example = append(example, f.Key+"："+exampleValue(f))
		}
		resp.TemplateList = append(resp.TemplateList, templateItem{
			TemplateID: t.ID, Title: t.Title, Content: strings.Join(content, "\n"), Example: strings.Join(example, "\n"),
		})
	}
	s.stats.countErrcode(0)
	s.breakResponse(w, r, d, resp)
}

// exampleValue is a sample value of f's type that template send accepts.
func exampleValue(f Field) string {
	switch f.Type {
	case FieldConst:
		if len(f.Values) > 0 {
			return f.Values[0]
		}
	case FieldNumber:
		return "42"
	case FieldLetter:
		return "abc"
	case FieldSymbol:
		return "%"
	case FieldCharacterString:
		return "SO-2026-0001"
	case FieldTime:
		return "2026年11月23日 15:01"
	case FieldDate:
		return "2026年11月23日"
	case FieldAmount:
		return "99.00元"
	case FieldPhoneNumber:
		return "13800138000"
	case FieldCarNumber:
		return "粤A12345"
	case FieldName:
		return "张三"
	case FieldPhrase:
		return "已发货"
	}
	return "示例"
}

// handleCustomSend sends a text customer-service message: 43004 to a
// non-follower, 45015 outside 48 h of the user's last interaction
// (simulated messages, follows, QR scans and clicks). Each call with a
// well-formed body is recorded in the ledger with api "custom_send".
func (s *Server) handleCustomSend(w http.ResponseWriter, r *http.Request) {
	app, body, ok := s.tokenPost(w, r)
	if !ok {
		return
	}
	receivedAt := s.now()
	var msg customMessage
	if len(body) > maxRequestBody || decodeJSON(body, &msg) != nil {
		writeWeChat(w, s.errResponse(wechat.CodeDataFormatError, ""))
		return
	}
	record := func(code int) {
		var data json.RawMessage
		if b, err := wechat.Marshal(msg); err == nil {
			data = b
		}
		s.ledger.Append(LedgerEntry{ReceivedAt: receivedAt, AppID: app.AppID, ToUser: msg.ToUser, ErrCode: code, API: LedgerAPICustomSend, Data: data})
	}
	d := s.faults.Decide(Call{Endpoint: EndpointCustomSend, AppID: app.AppID, ToUser: msg.ToUser})
	if s.applyFault(w, r, d, record) {
		return
	}
	code := s.customSendCode(app, &msg, receivedAt)
	record(code)
	if code != 0 {
		s.breakResponse(w, r, d, s.errResponse(code, ""))
		return
	}
	s.stats.countErrcode(0)
	s.breakResponse(w, r, d, wechat.Response{ErrMsg: "ok"})
}

func (s *Server) customSendCode(app *appState, msg *customMessage, now time.Time) int {
	switch {
	case !wellFormedOpenID(msg.ToUser):
		return wechat.CodeInvalidOpenID
	case msg.MsgType != "text":
		return codeInvalidMsgType // the mock sends text only
	case msg.Text == nil || msg.Text.Content == "":
		return wechat.CodeDataFormatError
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !app.follows(msg.ToUser) {
		return wechat.CodeRequireSubscribe
	}
	if u := app.users[msg.ToUser]; u == nil || u.lastInteraction.IsZero() || now.Sub(u.lastInteraction) >= customWindow {
		return codeOutOfWindow
	}
	return 0
}
