// Package wechat is the WeChat Official Account protocol, defined once for
// every program in this repository: wxpushd speaks it as a client and a
// callback receiver, mockwx speaks it as the server.
//
// It holds the wire types (JSON API bodies and callback XML), the errcode
// taxonomy that decides how a caller reacts to each errcode, the callback
// signatures and the WXBizMsgCrypt AES envelope, and an outbound API client.
//
// Facts it relies on (see shared/reference/wechat-protocol.md):
//   - errors come back as HTTP 200 with a non-zero "errcode";
//   - msgid is a 64-bit integer that routinely exceeds 2^53;
//   - request JSON must not HTML-escape "<", ">" and "&";
//   - the AES envelope pads with PKCS#7 to 32-byte blocks, uses
//     IV = key[:16], and the EncodingAESKey is decoded non-strictly;
//   - the delivery report's tag is MsgID, a user message's tag is MsgId.
//
// The package imports only the standard library. Secrets (appsecret,
// access_token, EncodingAESKey) never appear in its errors.
package wechat
