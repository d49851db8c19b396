package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// consoleSecretSize is the length of the console's HMAC secret in bytes.
const consoleSecretSize = 32

// consoleSecret is the key of the console's HMAC secret: hex of
// consoleSecretSize random bytes, without expiry.
func (k keys) consoleSecret() string { return k.prefix + "console:secret" }

// ConsoleSecret returns the secret the web console signs its session
// cookies and CSRF tokens with. The first instance to ask creates it
// (SET NX of 32 random bytes, hex), so every instance signs with the same
// secret and a session works on all of them; a store that lost its data
// gets a new secret, which ends every session.
func (s *Store) ConsoleSecret(ctx context.Context) ([]byte, error) {
	key := s.keys.consoleSecret()
	v, err := s.rdb.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		var b [consoleSecretSize]byte
		_, _ = rand.Read(b[:]) // never fails (crypto/rand crashes the program instead)
		if err := s.rdb.SetNX(ctx, key, hex.EncodeToString(b[:]), 0).Err(); err != nil {
			return nil, unavailable("console secret", err)
		}
		// Another instance may have won the race: read what is stored.
		v, err = s.rdb.Get(ctx, key).Result()
	}
	if err != nil {
		return nil, unavailable("console secret", err)
	}
	secret, err := hex.DecodeString(v)
	if err != nil || len(secret) != consoleSecretSize {
		// Never print the value: it is a secret, even when malformed.
		return nil, fmt.Errorf("store: console secret at %s is not %d hex-encoded bytes", key, consoleSecretSize)
	}
	return secret, nil
}
