package wxpushd

import (
	"context"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// persistenceTimeout bounds the start-up check of Redis's persistence.
const persistenceTimeout = 2 * time.Second

// checkPersistence reads Redis's persistence settings (CONFIG GET
// appendonly, save) and says what a crash of the Redis host would lose:
// WARN when neither the append-only file nor snapshots are on (a restart
// loses everything), WARN with snapshots only (a restart loses what was
// written since the last one), INFO with the append-only file. Managed
// Redis often refuses CONFIG: that is logged at INFO, and start-up goes on.
// A maxmemory with an evicting policy gets a WARN too: eviction loses keys
// one by one, which the store epoch cannot notice.
func checkPersistence(ctx context.Context, rdb redis.UniversalClient, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, persistenceTimeout)
	defer cancel()
	conf := map[string]string{}
	for _, name := range []string{"appendonly", "appendfsync", "save", "maxmemory", "maxmemory-policy"} {
		v, err := rdb.ConfigGet(ctx, name).Result()
		if err != nil {
			log.Info("redis persistence settings not checked: CONFIG GET refused (managed Redis often disables it); make sure Redis runs with appendonly yes", "err", err)
			return
		}
		conf[name] = v[name]
	}
	if policy := conf["maxmemory-policy"]; conf["maxmemory"] != "" && conf["maxmemory"] != "0" && policy != "" && policy != "noeviction" {
		log.Warn("REDIS EVICTS KEYS WHEN FULL (maxmemory-policy "+policy+"): records, queue entries and idempotency keys can vanish one by one, without the store-reset alarm. Set maxmemory-policy noeviction (a full Redis then answers errors: the API answers 503).",
			"maxmemory", conf["maxmemory"], "maxmemory_policy", policy)
	}
	aof, snapshots := conf["appendonly"] == "yes", conf["save"] != ""
	switch {
	case aof:
		log.Info("redis persistence: append-only file on", "appendonly", conf["appendonly"], "appendfsync", conf["appendfsync"], "save", conf["save"])
	case snapshots:
		log.Warn("REDIS PERSISTS BY SNAPSHOTS ONLY (appendonly no): a Redis restart loses every message, record and idempotency key written since the last snapshot, without an alarm. Set appendonly yes with appendfsync everysec (or always).",
			"appendonly", conf["appendonly"], "save", conf["save"])
	default:
		log.Warn("REDIS PERSISTENCE IS OFF (appendonly no, save \"\"): a Redis restart loses every queued message, record and idempotency key. Set appendonly yes with appendfsync everysec (or always).",
			"appendonly", conf["appendonly"], "save", conf["save"])
	}
}
