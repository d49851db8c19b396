package wechat

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
)

// Crypto errors. Decrypt wraps one of them with details; none carries key
// material.
var (
	ErrInvalidAESKey   = errors.New("wechat: invalid EncodingAESKey")
	ErrNoAESKey        = errors.New("wechat: no EncodingAESKey configured")
	ErrBadCiphertext   = errors.New("wechat: bad ciphertext")
	ErrBadPadding      = errors.New("wechat: bad PKCS#7 padding")
	ErrBadLength       = errors.New("wechat: bad message length")
	ErrAppIDMismatch   = errors.New("wechat: appid trailer does not match")
	ErrSignature       = errors.New("wechat: signature mismatch")
	ErrToUserMismatch  = errors.New("wechat: outer and inner ToUserName differ")
	ErrMissingEncrypt  = errors.New("wechat: encrypted callback has no Encrypt element")
	ErrMissingSigParam = errors.New("wechat: signature parameters missing")
)

const (
	// EncodingAESKeyLength is the length of an EncodingAESKey: 43 base64
	// characters encoding 32 bytes.
	EncodingAESKeyLength = 43
	// padBlock is WeChat's PKCS#7 block size: 32, not AES's 16.
	padBlock = 32
	// randomLen is the length of the random prefix of the plaintext.
	randomLen = 16
	// MaxCiphertext bounds the ciphertext Decrypt accepts (1 MiB).
	MaxCiphertext = 1 << 20
)

// Signature returns WeChat's SHA-1 signature of parts: the parts sorted
// byte-wise, joined without separator, hashed, lower-case hex. With
// (token, timestamp, nonce) it is the URL "signature"; with
// (token, timestamp, nonce, encrypt) it is "msg_signature".
func Signature(parts ...string) string {
	sorted := slices.Clone(parts)
	slices.Sort(sorted)
	sum := sha1.Sum([]byte(strings.Join(sorted, "")))
	return hex.EncodeToString(sum[:])
}

// VerifySignature reports, in constant time, whether sig is the signature
// of parts.
func VerifySignature(sig string, parts ...string) bool {
	want := Signature(parts...)
	return subtle.ConstantTimeCompare([]byte(strings.ToLower(sig)), []byte(want)) == 1
}

// DecodeAESKey decodes a 43-character EncodingAESKey into its 32-byte AES
// key. Decoding is deliberately non-strict: WeChat keys often have non-zero
// trailing bits in the last character, which strict base64 rejects.
func DecodeAESKey(encodingAESKey string) ([]byte, error) {
	if len(encodingAESKey) != EncodingAESKeyLength {
		return nil, fmt.Errorf("%w: must be %d characters, got %d", ErrInvalidAESKey, EncodingAESKeyLength, len(encodingAESKey))
	}
	key, err := base64.StdEncoding.DecodeString(encodingAESKey + "=")
	if err != nil {
		return nil, fmt.Errorf("%w: not base64", ErrInvalidAESKey)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("%w: decodes to %d bytes, want 32", ErrInvalidAESKey, len(key))
	}
	return key, nil
}

// CrypterConfig configures a Crypter for one app's callback endpoint.
type CrypterConfig struct {
	Token string // the callback Token used in signatures
	AppID string // the appid trailer every envelope must carry
	// EncodingAESKey is the current key; empty means plaintext mode only.
	EncodingAESKey string
	// PreviousEncodingAESKey, when set, is tried when the current key fails,
	// so envelopes sealed before a key rotation still open.
	PreviousEncodingAESKey string
	// Rand supplies the 16 random bytes of each envelope; nil = crypto/rand.
	// A seeded reader makes envelopes reproducible (mockwx -seed).
	Rand io.Reader
}

// Crypter signs, verifies, encrypts and decrypts one app's callback traffic
// (WXBizMsgCrypt). It is safe for concurrent use if its Rand is.
type Crypter struct {
	token string
	appID string
	keys  [][]byte // current first, then previous
	rand  io.Reader
}

// NewCrypter validates cfg and returns its Crypter.
func NewCrypter(cfg CrypterConfig) (*Crypter, error) {
	if cfg.Token == "" {
		return nil, errors.New("wechat: callback token is empty")
	}
	c := &Crypter{token: cfg.Token, appID: cfg.AppID, rand: cfg.Rand}
	if c.rand == nil {
		c.rand = rand.Reader
	}
	if cfg.EncodingAESKey == "" && cfg.PreviousEncodingAESKey != "" {
		return nil, fmt.Errorf("%w: previous key given without a current key", ErrInvalidAESKey)
	}
	for _, k := range []string{cfg.EncodingAESKey, cfg.PreviousEncodingAESKey} {
		if k == "" {
			continue
		}
		key, err := DecodeAESKey(k)
		if err != nil {
			return nil, err
		}
		c.keys = append(c.keys, key)
	}
	if len(c.keys) > 0 && cfg.AppID == "" {
		return nil, errors.New("wechat: appid is required with an EncodingAESKey")
	}
	return c, nil
}

// String describes the Crypter without its token or keys.
func (c *Crypter) String() string {
	return fmt.Sprintf("wechat.Crypter{appid: %q, keys: %d}", c.appID, len(c.keys))
}

// GoString is String, so %#v hides the token and keys too.
func (c *Crypter) GoString() string { return c.String() }

// LogValue implements slog.LogValuer without the token or keys.
func (c *Crypter) LogValue() slog.Value {
	return slog.GroupValue(slog.String("appid", c.appID), slog.Int("keys", len(c.keys)))
}

// AppID returns the appid the Crypter seals into and expects in envelopes.
func (c *Crypter) AppID() string { return c.appID }

// CanEncrypt reports whether the Crypter has an AES key.
func (c *Crypter) CanEncrypt() bool { return len(c.keys) > 0 }

// Sign returns the signature of timestamp and nonce with the callback token,
// and with encrypt too when it is given (msg_signature).
func (c *Crypter) Sign(timestamp, nonce string, encrypt ...string) string {
	return Signature(append([]string{c.token, timestamp, nonce}, encrypt...)...)
}

// Verify reports, in constant time, whether sig is Sign(timestamp, nonce, encrypt...).
func (c *Crypter) Verify(sig, timestamp, nonce string, encrypt ...string) bool {
	return VerifySignature(sig, append([]string{c.token, timestamp, nonce}, encrypt...)...)
}

// Encrypt seals msg into a base64 envelope with the current key:
// AES-256-CBC(IV = key[:16]) of random(16) ‖ len(msg) (4 bytes, big endian)
// ‖ msg ‖ appid, PKCS#7-padded to 32 bytes. The random prefix is 16
// lower-case hex characters, as WeChat's own.
func (c *Crypter) Encrypt(msg []byte) (string, error) {
	if len(c.keys) == 0 {
		return "", ErrNoAESKey
	}
	var raw [randomLen / 2]byte
	if _, err := io.ReadFull(c.rand, raw[:]); err != nil {
		return "", fmt.Errorf("wechat: read random: %w", err)
	}
	random := make([]byte, randomLen)
	hex.Encode(random, raw[:])
	return encrypt(c.keys[0], random, msg, c.appID)
}

func encrypt(key, random, msg []byte, appID string) (string, error) {
	if len(random) != randomLen {
		return "", fmt.Errorf("wechat: random prefix must be %d bytes", randomLen)
	}
	if uint64(len(msg)) > uint64(^uint32(0)) {
		return "", fmt.Errorf("%w: message too large", ErrBadLength)
	}
	plain := make([]byte, 0, randomLen+4+len(msg)+len(appID)+padBlock)
	plain = append(plain, random...)
	plain = binary.BigEndian.AppendUint32(plain, uint32(len(msg)))
	plain = append(plain, msg...)
	plain = append(plain, appID...)
	pad := padBlock - len(plain)%padBlock
	for range pad {
		plain = append(plain, byte(pad))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return "", fmt.Errorf("%w: %d-byte key", ErrInvalidAESKey, len(key))
	}
	out := make([]byte, len(plain))
	cipher.NewCBCEncrypter(block, key[:aes.BlockSize]).CryptBlocks(out, plain)
	return base64.StdEncoding.EncodeToString(out), nil
}

// Decrypt opens a base64 envelope and returns the message inside. It tries
// the current key, then the previous one; when both fail it returns the
// current key's error. The appid trailer must equal the Crypter's appid.
func (c *Crypter) Decrypt(encrypted string) ([]byte, error) {
	if len(c.keys) == 0 {
		return nil, ErrNoAESKey
	}
	var first error
	for _, key := range c.keys {
		msg, err := decrypt(key, encrypted, c.appID)
		if err == nil {
			return msg, nil
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}

func decrypt(key []byte, encrypted, appID string) ([]byte, error) {
	if base64.StdEncoding.DecodedLen(len(encrypted)) > MaxCiphertext {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrBadCiphertext, MaxCiphertext)
	}
	data, err := base64.StdEncoding.DecodeString(strings.TrimSpace(encrypted))
	if err != nil {
		return nil, fmt.Errorf("%w: not base64", ErrBadCiphertext)
	}
	if len(data) == 0 || len(data)%padBlock != 0 {
		return nil, fmt.Errorf("%w: length %d is not a positive multiple of %d", ErrBadCiphertext, len(data), padBlock)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %d-byte key", ErrInvalidAESKey, len(key))
	}
	plain := make([]byte, len(data))
	cipher.NewCBCDecrypter(block, key[:aes.BlockSize]).CryptBlocks(plain, data)

	pad := int(plain[len(plain)-1])
	if pad < 1 || pad > padBlock {
		return nil, fmt.Errorf("%w: pad value %d", ErrBadPadding, pad)
	}
	for _, b := range plain[len(plain)-pad:] {
		if int(b) != pad {
			return nil, fmt.Errorf("%w: inconsistent pad bytes", ErrBadPadding)
		}
	}
	plain = plain[:len(plain)-pad]
	if len(plain) < randomLen+4 {
		return nil, fmt.Errorf("%w: %d bytes cannot hold the header", ErrBadLength, len(plain))
	}
	n := binary.BigEndian.Uint32(plain[randomLen : randomLen+4])
	rest := plain[randomLen+4:]
	if uint64(n) > uint64(len(rest)) {
		return nil, fmt.Errorf("%w: declares %d bytes, %d present", ErrBadLength, n, len(rest))
	}
	msg, trailer := rest[:n], rest[n:]
	if subtle.ConstantTimeCompare(trailer, []byte(appID)) != 1 {
		return nil, fmt.Errorf("%w: got %q", ErrAppIDMismatch, truncate(string(trailer), 40))
	}
	return msg, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
