// Command goclient is an unmodified WeChat client: it calls
// https://api.weixin.qq.com with net/http's default client and nothing
// else, so it reaches mockwx only through HTTPS_PROXY and SSL_CERT_FILE.
// The proxy tests run it in a process of its own.
//
//	goclient APPID SECRET TOUSER
package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: goclient APPID SECRET TOUSER")
		os.Exit(2)
	}
	appid, secret, touser := os.Args[1], os.Args[2], os.Args[3]
	var tok struct {
		AccessToken string `json:"access_token"`
		ErrCode     int    `json:"errcode"`
	}
	get("https://api.weixin.qq.com/cgi-bin/token?grant_type=client_credential&appid="+appid+"&secret="+secret, &tok)
	if tok.AccessToken == "" {
		fail("no access_token (errcode %d)", tok.ErrCode)
	}
	fmt.Println("token: ok")
	body := `{"touser":"` + touser + `","template_id":"notice","data":{"keyword1":{"value":"from Go"},"keyword2":{"value":"net/http"}}}`
	resp, err := http.Post("https://api.weixin.qq.com/cgi-bin/message/template/send?access_token="+url.QueryEscape(tok.AccessToken), "application/json", strings.NewReader(body))
	if err != nil {
		fail("send: %v", err)
	}
	var sent struct {
		ErrCode int   `json:"errcode"`
		MsgID   int64 `json:"msgid"`
	}
	decode(resp, &sent)
	fmt.Printf("send: errcode %d msgid %d\n", sent.ErrCode, sent.MsgID)
	var ledger struct {
		Messages []struct {
			ToUser string `json:"touser"`
			MsgID  int64  `json:"msgid"`
		} `json:"messages"`
	}
	get("https://api.weixin.qq.com/_mock/messages?limit=1000", &ledger)
	n := 0
	for _, m := range ledger.Messages {
		if m.ToUser == touser && m.MsgID == sent.MsgID {
			n++
		}
	}
	fmt.Printf("ledger: %d entry for %s\n", n, touser)
}

func get(u string, out any) {
	resp, err := http.Get(u)
	if err != nil {
		fail("GET: %v", err)
	}
	decode(resp, out)
}

func decode(resp *http.Response, out any) {
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fail("HTTP %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		fail("decode: %v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "goclient: "+format+"\n", args...)
	os.Exit(1)
}
