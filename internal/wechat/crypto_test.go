package wechat

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Official vector A (mini-program message-push page, JSON mode).
const (
	vecAToken     = "AAAAA"
	vecAKey       = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	vecAAppID     = "wxba5fad812f8e6fb9"
	vecATimestamp = "1714112445"
	vecANonce     = "415670741"
	vecASignature = "6c5c811b55cc85e0e1b54100749188c20beb3f5d"
	vecAMsgSig    = "046e02f8204d34f8ba5fa3b1db94908f3df2e9b3"
	vecAEncrypt   = "+qdx1OKCy+5JPCBFWw70tm0fJGb2Jmeia4FCB7kao+/Q5c/ohsOzQHi8khUOb05JCpj0JB4RvQMkUyus8TPxLKJGQqcvZqzDpVzazhZv6JsXUnnR8XGT740XgXZUXQ7vJVnAG+tE8NUd4yFyjPy7GgiaviNrlCTj+l5kdfMuFUPpRSrfMZuMcp3Fn2Pede2IuQrKEYwKSqFIZoNqJ4M8EajAsjLY2km32IIjdf8YL/P50F7mStwntrA2cPDrM1kb6mOcfBgRtWygb3VIYnSeOBrebufAlr7F9mFUPAJGj04="
	vecAMsg       = `{"ToUserName":"gh_97417a04a28d","FromUserName":"o9AgO5Kd5ggOC-bXrbNODIiE3bGY","CreateTime":1714112445,"MsgType":"event","Event":"debug_demo","debug_str":"hello world"}`
	vecAReplyMsg  = `{"demo_resp":"good luck"}`
	vecAReplyRand = "707722b803182950"
	vecAReplyEnc  = "ELGduP2YcVatjqIS+eZbp80MNLoAUWvzzyJxgGzxZO/5sAvd070Bs6qrLARC9nVHm48Y4hyRbtzve1L32tmxSQ=="
	vecAReplyTS   = "1713424427"
	vecAReplySig  = "1b9339964ed2e271e7c7b6ff2b0ef902fc94dea1"
)

// Official vector B (2014 WXBizMsgCrypt sample, compatible-mode XML).
const (
	vecBToken     = "spamtest"
	vecBKey       = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
	vecBKeyHex    = "69b71d79f8218a39259a7a29aabb2dbafc31cb3d35db7e39ebbf3d0010831051"
	vecBAppID     = "wx2c2769f8efd9abc2"
	vecBTimestamp = "1409735669"
	vecBNonce     = "1320562132"
	vecBMsgSig    = "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
	vecBSignature = "16120ec1b8dbb870f510d87ce6bc2463eae6ca1a"
	vecBEncrypt   = "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE="
)

func mustCrypter(t testing.TB, cfg CrypterConfig) *Crypter {
	t.Helper()
	c, err := NewCrypter(cfg)
	require.NoError(t, err)
	return c
}

func TestSignatureVectors(t *testing.T) {
	tests := []struct {
		name  string
		parts []string
		want  string
	}{
		{"URL verification (§5.2)", []string{"AAAAA", "1714036504", "1514711492"}, "f464b24fc39322e44b38aa78f5edd27bd1441696"},
		{"plaintext POST (§5.3)", []string{"AAAAA", "1714037059", "486452656"}, "899cf89e464efb63f54ddac96b0a0a235f53aa78"},
		{"vector A signature", []string{vecAToken, vecATimestamp, vecANonce}, vecASignature},
		{"vector A msg_signature", []string{vecAToken, vecATimestamp, vecANonce, vecAEncrypt}, vecAMsgSig},
		{"vector A reply MsgSignature", []string{vecAToken, vecAReplyTS, vecANonce, vecAReplyEnc}, vecAReplySig},
		{"vector B msg_signature", []string{vecBToken, vecBTimestamp, vecBNonce, vecBEncrypt}, vecBMsgSig},
		{"vector B signature", []string{vecBToken, vecBTimestamp, vecBNonce}, vecBSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Signature(tt.parts...)
			assert.Equal(t, tt.want, got, "Signature(%q)", tt.parts)
			assert.True(t, VerifySignature(strings.ToUpper(tt.want), tt.parts...), "upper-case hex verifies")
			assert.False(t, VerifySignature(tt.want[:39]+"0", tt.parts...), "altered signature must not verify")
		})
	}
}

func TestDecodeAESKey(t *testing.T) {
	key, err := DecodeAESKey(vecBKey)
	require.NoError(t, err)
	assert.Equal(t, vecBKeyHex, hex.EncodeToString(key))

	// The official key has non-zero trailing bits: strict base64 rejects it,
	// which is why DecodeAESKey must not be strict.
	_, strictErr := base64.StdEncoding.Strict().DecodeString(vecBKey + "=")
	require.Error(t, strictErr, "strict decoding should reject the official key")

	zero, err := DecodeAESKey(vecAKey)
	require.NoError(t, err)
	assert.Equal(t, make([]byte, 32), zero)

	for _, bad := range []string{"", "short", vecBKey + "H", vecBKey[:42] + "!", strings.Repeat("=", 43)} {
		_, err := DecodeAESKey(bad)
		assert.ErrorIs(t, err, ErrInvalidAESKey, "DecodeAESKey(%q)", bad)
		if err != nil {
			assert.NotContains(t, err.Error(), bad[:min(len(bad), 10)]+"x", "error must not echo the key")
		}
	}
}

func TestDecryptVectorA(t *testing.T) {
	c := mustCrypter(t, CrypterConfig{Token: vecAToken, AppID: vecAAppID, EncodingAESKey: vecAKey})
	got, err := c.Decrypt(vecAEncrypt)
	require.NoError(t, err)
	assert.Equal(t, vecAMsg, string(got))

	// Byte-level layout: random a8eedb185eb2fecf, msg_len 167, 224-byte ciphertext.
	raw, _ := base64.StdEncoding.DecodeString(vecAEncrypt)
	assert.Len(t, raw, 224)
	assert.Len(t, got, 167)
}

func TestEncryptVectorAReply(t *testing.T) {
	key, err := DecodeAESKey(vecAKey)
	require.NoError(t, err)
	got, err := encrypt(key, []byte(vecAReplyRand), []byte(vecAReplyMsg), vecAAppID)
	require.NoError(t, err)
	assert.Equal(t, vecAReplyEnc, got, "reply envelope must match the official vector byte for byte")

	c := mustCrypter(t, CrypterConfig{Token: vecAToken, AppID: vecAAppID, EncodingAESKey: vecAKey})
	reply := &EncryptedReply{Encrypt: got, MsgSignature: vecAReplySig, TimeStamp: 1713424427, Nonce: vecANonce}
	msg, err := c.OpenReply(reply)
	require.NoError(t, err)
	assert.Equal(t, vecAReplyMsg, string(msg))
}

func TestDecryptVectorB(t *testing.T) {
	c := mustCrypter(t, CrypterConfig{Token: vecBToken, AppID: vecBAppID, EncodingAESKey: vecBKey})
	got, err := c.Decrypt(vecBEncrypt)
	require.NoError(t, err)
	assert.Len(t, got, 280)
	m, err := ParseMessage(got)
	require.NoError(t, err)
	assert.Equal(t, "gh_10f6c3c3ac5a", m.ToUserName)
	assert.Equal(t, "oyORnuP8q7ou2gfYjqLzSIWZf0rs", m.FromUserName)
	assert.Equal(t, int64(1409735668), m.CreateTime)
	assert.Equal(t, MsgTypeText, m.MsgType)
	assert.Equal(t, "abcdteT", m.Content)
	assert.Equal(t, int64(6054768590064713728), m.UserMsgID)
}

func TestOpenCallbackVectorB(t *testing.T) {
	c := mustCrypter(t, CrypterConfig{Token: vecBToken, AppID: vecBAppID, EncodingAESKey: vecBKey})
	q := url.Values{
		ParamSignature: {vecBSignature}, ParamTimestamp: {vecBTimestamp}, ParamNonce: {vecBNonce},
		ParamEncryptType: {EncryptTypeAES}, ParamMsgSignature: {vecBMsgSig},
	}
	body := []byte("<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><Encrypt><![CDATA[" + vecBEncrypt + "]]></Encrypt></xml>")
	m, err := c.OpenCallback(q, body)
	require.NoError(t, err)
	assert.Equal(t, "abcdteT", m.Content)

	outerMismatch := bytes.Replace(body, []byte("gh_10f6c3c3ac5a"), []byte("gh_000000000000"), 1)
	_, err = c.OpenCallback(q, outerMismatch)
	assert.ErrorIs(t, err, ErrToUserMismatch)
}

func TestDecryptRejectsTampering(t *testing.T) {
	c := mustCrypter(t, CrypterConfig{Token: vecAToken, AppID: vecAAppID, EncodingAESKey: vecAKey})
	raw, _ := base64.StdEncoding.DecodeString(vecAEncrypt)
	key, _ := DecodeAESKey(vecAKey)

	flip := func(i int) string {
		b := bytes.Clone(raw)
		b[i] ^= 0x01
		return base64.StdEncoding.EncodeToString(b)
	}
	// sealRaw encrypts an arbitrary plaintext block sequence (no layout, no padding added).
	sealRaw := func(plain []byte) string { return rawCBC(t, key, plain) }
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty", "", ErrBadCiphertext},
		{"not base64", "@@@@", ErrBadCiphertext},
		{"length not a multiple of 32", base64.StdEncoding.EncodeToString(raw[:len(raw)-16]), ErrBadCiphertext},
		{"last block flipped (padding)", flip(len(raw) - 1), ErrBadPadding},
		{"pad value 0", sealRaw(append(bytes.Repeat([]byte{'x'}, 31), 0)), ErrBadPadding},
		{"pad value 33", sealRaw(append(bytes.Repeat([]byte{'x'}, 31), 33)), ErrBadPadding},
		{"inconsistent pad bytes", sealRaw(append(bytes.Repeat([]byte{'x'}, 30), 1, 2)), ErrBadPadding},
		{"too short for header", sealRaw(append(bytes.Repeat([]byte{'x'}, 12), bytes.Repeat([]byte{20}, 20)...)), ErrBadLength},
		{"declared length too large", sealRaw(append(append(bytes.Repeat([]byte{'x'}, 16), 0xff, 0xff, 0xff, 0xff), bytes.Repeat([]byte{12}, 12)...)), ErrBadLength},
		{"wrong appid trailer", mustEncrypt(t, key, []byte("hello"), "wx0000000000000000"), ErrAppIDMismatch},
		{"no appid trailer", mustEncrypt(t, key, []byte("hello"), ""), ErrAppIDMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Decrypt(tt.in)
			assert.ErrorIs(t, err, tt.want, "Decrypt(%.40q)", tt.in)
		})
	}
	// A flipped bit in the first block garbles random bytes only (CBC), so the
	// payload still decodes: integrity comes from msg_signature, which
	// OpenCallback checks before decrypting.
	q := url.Values{ParamSignature: {vecASignature}, ParamTimestamp: {vecATimestamp}, ParamNonce: {vecANonce}, ParamEncryptType: {EncryptTypeAES}, ParamMsgSignature: {vecAMsgSig}}
	body := []byte("<xml><ToUserName>gh_97417a04a28d</ToUserName><Encrypt>" + flip(0) + "</Encrypt></xml>")
	_, err := c.OpenCallback(q, body)
	assert.ErrorIs(t, err, ErrSignature)
}

func mustEncrypt(t *testing.T, key, msg []byte, appID string) string {
	t.Helper()
	s, err := encrypt(key, bytes.Repeat([]byte("0"), 16), msg, appID)
	require.NoError(t, err)
	return s
}

func TestEncryptDecryptRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		keyBytes := make([]byte, 32)
		for j := range keyBytes {
			keyBytes[j] = byte(rng.IntN(256))
		}
		encodingKey := base64.StdEncoding.EncodeToString(keyBytes)[:43]
		appID := "wx" + hex.EncodeToString(keyBytes[:8])
		c := mustCrypter(t, CrypterConfig{Token: "tok", AppID: appID, EncodingAESKey: encodingKey, Rand: newSeededReader(uint64(i))})
		msg := make([]byte, rng.IntN(200))
		for j := range msg {
			msg[j] = byte(rng.IntN(256))
		}
		enc, err := c.Encrypt(msg)
		require.NoError(t, err)
		raw, err := base64.StdEncoding.DecodeString(enc)
		require.NoError(t, err)
		require.Zero(t, len(raw)%32, "ciphertext must be a multiple of 32 bytes (len(msg)=%d)", len(msg))
		got, err := c.Decrypt(enc)
		require.NoError(t, err, "round trip of %d bytes", len(msg))
		require.Equal(t, msg, got)
	}
}

func TestEncryptIsReproducibleWithSeededRand(t *testing.T) {
	a := mustCrypter(t, CrypterConfig{Token: "t", AppID: vecAAppID, EncodingAESKey: vecAKey, Rand: newSeededReader(7)})
	b := mustCrypter(t, CrypterConfig{Token: "t", AppID: vecAAppID, EncodingAESKey: vecAKey, Rand: newSeededReader(7)})
	x, err := a.Encrypt([]byte("hi"))
	require.NoError(t, err)
	y, err := b.Encrypt([]byte("hi"))
	require.NoError(t, err)
	assert.Equal(t, x, y)
	z, err := a.Encrypt([]byte("hi"))
	require.NoError(t, err)
	assert.NotEqual(t, x, z, "the random prefix must change between envelopes")
}

func TestKeyRotation(t *testing.T) {
	oldKey, newKey := vecBKey, vecAKey
	sealedOld := mustCrypter(t, CrypterConfig{Token: "t", AppID: vecBAppID, EncodingAESKey: oldKey})
	env, err := sealedOld.Encrypt([]byte("before rotation"))
	require.NoError(t, err)

	rotated := mustCrypter(t, CrypterConfig{Token: "t", AppID: vecBAppID, EncodingAESKey: newKey, PreviousEncodingAESKey: oldKey})
	got, err := rotated.Decrypt(env)
	require.NoError(t, err, "the previous key must still open old envelopes")
	assert.Equal(t, "before rotation", string(got))

	fresh, err := rotated.Encrypt([]byte("after"))
	require.NoError(t, err)
	_, err = sealedOld.Decrypt(fresh)
	assert.Error(t, err, "new envelopes are sealed with the current key")

	withoutPrevious := mustCrypter(t, CrypterConfig{Token: "t", AppID: vecBAppID, EncodingAESKey: newKey})
	_, err = withoutPrevious.Decrypt(env)
	assert.Error(t, err)
}

func TestNewCrypterValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  CrypterConfig
	}{
		{"no token", CrypterConfig{AppID: "wx1", EncodingAESKey: vecAKey}},
		{"bad key", CrypterConfig{Token: "t", AppID: "wx1", EncodingAESKey: "nope"}},
		{"bad previous key", CrypterConfig{Token: "t", AppID: "wx1", EncodingAESKey: vecAKey, PreviousEncodingAESKey: "nope"}},
		{"previous without current", CrypterConfig{Token: "t", AppID: "wx1", PreviousEncodingAESKey: vecAKey}},
		{"key without appid", CrypterConfig{Token: "t", EncodingAESKey: vecAKey}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewCrypter(tt.cfg)
			require.Error(t, err)
			assert.NotContains(t, err.Error(), vecAKey)
		})
	}
	plain := mustCrypter(t, CrypterConfig{Token: "t"})
	assert.False(t, plain.CanEncrypt())
	_, err := plain.Encrypt([]byte("x"))
	assert.ErrorIs(t, err, ErrNoAESKey)
	_, err = plain.Decrypt(vecAEncrypt)
	assert.ErrorIs(t, err, ErrNoAESKey)
}

func TestCrypterStringHidesSecrets(t *testing.T) {
	c := mustCrypter(t, CrypterConfig{Token: "callbacktoken", AppID: vecAAppID, EncodingAESKey: vecBKey})
	for _, s := range []string{c.String(), sprint(c)} {
		assert.NotContains(t, s, "callbacktoken")
		assert.NotContains(t, s, vecBKey)
		assert.Contains(t, s, vecAAppID)
	}
}

func TestDecryptWithWrongKeyFails(t *testing.T) {
	c := mustCrypter(t, CrypterConfig{Token: vecAToken, AppID: vecAAppID, EncodingAESKey: vecBKey})
	_, err := c.Decrypt(vecAEncrypt)
	require.Error(t, err)
	assert.True(t, errors.Is(err, ErrBadPadding) || errors.Is(err, ErrBadLength) || errors.Is(err, ErrAppIDMismatch), "got %v", err)
}
