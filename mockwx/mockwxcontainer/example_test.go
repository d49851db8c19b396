package mockwxcontainer_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/mockwx/mockwxcontainer"
)

// A test of a WeChat client in another project: the mock runs in a
// container, the client keeps WeChat's real URL and goes through the mock's
// HTTPS proxy, and the admin API checks what the mock saw. (In a test,
// t.Skip on ErrNoDocker, t.Fatal on other errors, and t.Cleanup the
// Terminate.)
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := mockwxcontainer.Run(ctx, mockwxcontainer.WithSeed(42), mockwxcontainer.WithAdminToken("admin-secret"))
	if errors.Is(err, mockwxcontainer.ErrNoDocker) {
		log.Print("no Docker here: ", err)
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = c.Terminate(context.Background()) }()

	// The client under test: WeChat's URL, the mock's proxy and CA
	// (c.ProxyURL() and c.CertPool() for a client built elsewhere).
	demo := mockwx.DemoApp()
	resp, err := c.HTTPClient().Get("https://api.weixin.qq.com/cgi-bin/token?grant_type=client_credential&appid=" + demo.AppID + "&secret=" + demo.Secret)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil {
		log.Fatal(err)
	}

	st, err := c.Admin().Stats(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("got a token:", tok.AccessToken != "", "token calls:", st.TokenCalls)
}
