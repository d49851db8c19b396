package wechat

// API names the WeChat endpoint a call went to. It appears in errors and
// decides how an errcode is classified (see ClassifyAPI).
type API string

// The endpoints this package knows.
const (
	APIToken        API = "token"         // GET /cgi-bin/token
	APIStableToken  API = "stable_token"  // POST /cgi-bin/stable_token
	APITemplateSend API = "template_send" // POST /cgi-bin/message/template/send
	APIClearQuota   API = "clear_quota"   // POST /cgi-bin/clear_quota
)

// URL paths of the endpoints, relative to the API base URL.
const (
	PathToken                 = "/cgi-bin/token"
	PathStableToken           = "/cgi-bin/stable_token"
	PathTemplateSend          = "/cgi-bin/message/template/send"
	PathClearQuota            = "/cgi-bin/clear_quota"
	PathGetCallbackIP         = "/cgi-bin/getcallbackip"
	DefaultBaseURL            = "https://api.weixin.qq.com"
	GrantTypeClientCredential = "client_credential"
)

// Response is the envelope every WeChat JSON response may carry. A zero
// ErrCode means success; token endpoints omit both fields on success.
type Response struct {
	ErrCode int    `json:"errcode"`
	ErrMsg  string `json:"errmsg"`
}

// Err returns the response's error for api, or nil when ErrCode is zero.
func (r Response) Err(api API) error {
	if r.ErrCode == 0 {
		return nil
	}
	return &Error{API: api, Code: r.ErrCode, Msg: r.ErrMsg}
}

// TokenResponse is the body of /cgi-bin/token and /cgi-bin/stable_token.
// On failure AccessToken is empty and the embedded Response holds the errcode.
type TokenResponse struct {
	Response
	AccessToken string `json:"access_token,omitempty"`
	ExpiresIn   int    `json:"expires_in,omitempty"` // seconds of remaining lifetime
}

// StableTokenRequest is the JSON body of POST /cgi-bin/stable_token.
type StableTokenRequest struct {
	GrantType    string `json:"grant_type"`
	AppID        string `json:"appid"`
	Secret       string `json:"secret"`
	ForceRefresh bool   `json:"force_refresh,omitempty"`
}

// TemplateMessage is the JSON body of POST /cgi-bin/message/template/send.
type TemplateMessage struct {
	ToUser      string              `json:"touser"`
	TemplateID  string              `json:"template_id"`
	URL         string              `json:"url,omitempty"`
	MiniProgram *MiniProgram        `json:"miniprogram,omitempty"`
	ClientMsgID string              `json:"client_msg_id,omitempty"`
	Data        map[string]DataItem `json:"data"`
}

// MiniProgram is the optional mini program a template message jumps to.
// When both URL and MiniProgram are set, WeChat prefers the mini program.
type MiniProgram struct {
	AppID    string `json:"appid"`
	PagePath string `json:"pagepath,omitempty"`
}

// DataItem is the value of one {{key.DATA}} placeholder of a template.
// Color is a legacy hint that current WeChat ignores.
type DataItem struct {
	Value string `json:"value"`
	Color string `json:"color,omitempty"`
}

// SendResponse is the body of a template send. MsgID is the id WeChat later
// echoes as MsgID in the TEMPLATESENDJOBFINISH event; it exceeds 2^53.
type SendResponse struct {
	Response
	MsgID int64 `json:"msgid,omitempty"`
}

// ClearQuotaRequest is the JSON body of POST /cgi-bin/clear_quota.
type ClearQuotaRequest struct {
	AppID string `json:"appid"`
}

// CallbackIPResponse is the body of GET /cgi-bin/getcallbackip.
type CallbackIPResponse struct {
	Response
	IPList []string `json:"ip_list,omitempty"`
}
