package wechat

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
)

// newSeededReader returns a deterministic byte stream for reproducible envelopes.
func newSeededReader(seed uint64) io.Reader {
	return &seededReader{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

type seededReader struct{ rng *rand.Rand }

func (r *seededReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r.rng.IntN(256))
	}
	return len(p), nil
}

// rawCBC encrypts plain (a multiple of 16 bytes) with WeChat's key/IV scheme
// but without any layout or padding, to build malformed envelopes.
func rawCBC(t *testing.T, key, plain []byte) string {
	t.Helper()
	if len(plain)%aes.BlockSize != 0 {
		t.Fatalf("rawCBC: %d bytes is not a multiple of 16", len(plain))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(plain))
	cipher.NewCBCEncrypter(block, key[:aes.BlockSize]).CryptBlocks(out, plain)
	return base64.StdEncoding.EncodeToString(out)
}

func sprint(v any) string { return fmt.Sprintf("%v %+v %#v %s", v, v, v, v) }
