package httpapi

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/store"
)

// keyIndexKey is where auth stores the position of the request's API key
// in Options.APIKeys.
const keyIndexKey = "httpapi.key_index"

// rateLimit takes the request from the inbound rate limits (per API key
// and global, shared by all instances) and answers 429 with Retry-After
// when it is over one. When the limiter cannot be reached the request
// goes on: the store answers for itself, and a limiter outage must not
// refuse what the service could take.
func (a *api) rateLimit(c *gin.Context) {
	idx := -1
	if v, ok := c.Get(keyIndexKey); ok {
		idx = v.(int)
	}
	var client []byte
	if idx >= 0 {
		client = a.keys[idx][:]
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), a.storeTimeout)
	d, err := a.limiter.AllowRequest(ctx, client, a.limits)
	cancel()
	if err != nil {
		a.metrics.RedisErrors.WithLabelValues("rate_limit").Inc()
		a.log.WarnContext(ctx, "rate limit unavailable: request let through", "request_id", requestIDOf(c), "err", err)
		c.Next()
		return
	}
	if d.Allowed {
		c.Next()
		return
	}
	key := "none"
	if idx >= 0 {
		key = strconv.Itoa(idx + 1)
	}
	a.metrics.RateLimited.WithLabelValues(d.Scope, key).Inc()
	c.Header("Retry-After", strconv.Itoa(retryAfterSeconds(d.RetryAfter)))
	msg := "too many requests with this API key; retry after the time in Retry-After"
	if d.Scope == store.ScopeGlobal {
		msg = "the service takes no more requests now; retry after the time in Retry-After"
	}
	a.abort(c, http.StatusTooManyRequests, &service.Error{Code: service.CodeRateLimited, Message: msg})
}

// retryAfterSeconds rounds a wait up to whole seconds, at least 1 (the
// unit of Retry-After).
func retryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
