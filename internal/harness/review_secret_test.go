package harness_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/harness"
)

// TestStartRedisErrorHidesPassword: a Redis URL the harness refuses must
// not come back in the error with its password (wxload up and wxload run
// print this error as it is).
func TestStartRedisErrorHidesPassword(t *testing.T) {
	for _, raw := range []string{
		"user:s3cretpw@127.0.0.1:6379",       // no scheme
		"redis://:s3cretpw@/0",               // no host
		"redis://:s3cretpw%zz@127.0.0.1:1/0", // a bad escape: url.Parse fails
		"unix://:s3cretpw@/tmp/redis.sock",   // a scheme redisurl.Check accepts
	} {
		t.Run(raw, func(t *testing.T) {
			spec := testSpec(1)
			spec.Redis = raw
			_, err := harness.Start(t.Context(), harness.KindInProcess, spec)
			require.Error(t, err)
			assert.NotContains(t, err.Error(), "s3cretpw")
		})
	}
}

// TestStartFailureIsANilDeployment: when Start fails, the Deployment is a
// nil interface, not an interface holding a nil *InProcess (d != nil is
// then true and d.Close panics). assert.Nil does not see the difference.
func TestStartFailureIsANilDeployment(t *testing.T) {
	spec := testSpec(0)
	d, err := harness.Start(t.Context(), harness.KindInProcess, spec)
	require.Error(t, err)
	assert.True(t, d == nil, "Start returned %T(nil) with its error", d)
}
