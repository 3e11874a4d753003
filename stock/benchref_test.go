package stock_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idemq/idemq/internal/testenv"
)

// decrScript is the least a Redis store could do per reservation: one
// script call that takes a unit from a counter, and nothing else (no ID,
// no holder, no hold).
var decrScript = redis.NewScript(`
if tonumber(redis.call('GET', KEYS[1])) < 1 then
  return -1
end
return redis.call('DECR', KEYS[1])
`)

// benchRedisDecr is the yardstick for the redis sub-benchmark, measured in
// the same run on the same machine: decrScript through the same client
// settings at the same parallelism, one call per unit.
func benchRedisDecr(b *testing.B) {
	ctx := context.Background()
	_, prefix := testenv.Redis(b)
	client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(), PoolSize: 32})
	b.Cleanup(func() { client.Close() })
	key := prefix + "hot"
	if err := client.Set(ctx, key, b.N+1000, 0).Err(); err != nil {
		b.Fatal(err)
	}
	if err := decrScript.Load(ctx, client).Err(); err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(16)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n, err := decrScript.EvalSha(ctx, client, []string{key}).Int64()
			if err != nil || n < 0 {
				b.Errorf("decrement: %d, %v", n, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
	b.StopTimer()
	left, err := client.Get(ctx, key).Int()
	if err != nil || left != 1000 {
		b.Fatalf("%d units left after %d decrements of %d, %v", left, b.N, b.N+1000, err)
	}
}
