package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/pgqueue"
	"github.com/idemq/idemq/consumer/redisstream"
)

// queue is the broker the quickstart runs on.
type queue struct {
	src   consumer.Source
	pub   consumer.Publisher
	left  func(ctx context.Context) (int64, error) // messages still queued
	close func()
}

func openQueue(ctx context.Context, cfg config) (*queue, error) {
	switch cfg.queue {
	case "memory":
		q, err := consumer.NewMemQueue(consumer.MemQueueConfig{VisibilityTimeout: 5 * time.Second})
		if err != nil {
			return nil, err
		}
		return &queue{src: q, pub: q, close: func() {},
			left: func(context.Context) (int64, error) {
				st := q.Stats()
				return int64(st.Ready + st.Delayed + st.Leased), nil
			}}, nil

	case "redis":
		client := redis.NewClient(&redis.Options{Addr: cfg.redisAddr})
		if err := client.Ping(ctx).Err(); err != nil {
			client.Close()
			return nil, fmt.Errorf("redis at %s: %w", cfg.redisAddr, err)
		}
		src, err := redisstream.New(client, redisstream.Options{Stream: cfg.name, VisibilityTimeout: 5 * time.Second, Block: 200 * time.Millisecond})
		if err != nil {
			client.Close()
			return nil, err
		}
		pub, err := redisstream.NewPublisher(client, redisstream.PublisherOptions{Stream: cfg.name})
		if err != nil {
			client.Close()
			return nil, err
		}
		return &queue{src: src, pub: pub,
			left: func(ctx context.Context) (int64, error) {
				n, err := client.XLen(ctx, src.StreamKey()).Result()
				if err != nil {
					return 0, err
				}
				d, err := client.ZCard(ctx, src.DelayedKey()).Result()
				return n + d, err
			},
			close: func() {
				client.Del(context.Background(), src.StreamKey(), src.DelayedKey())
				client.Close()
			}}, nil

	case "postgres":
		pool, err := pgxpool.New(ctx, cfg.postgresURL)
		if err != nil {
			return nil, fmt.Errorf("postgres at %s: %w", cfg.postgresURL, err)
		}
		if err := pool.Ping(ctx); err != nil {
			pool.Close()
			return nil, fmt.Errorf("postgres at %s: %w", cfg.postgresURL, err)
		}
		opts := pgqueue.Options{Queue: cfg.name, VisibilityTimeout: 5 * time.Second, PollInterval: 100 * time.Millisecond}
		if err := pgqueue.Migrate(ctx, pool, opts); err != nil {
			pool.Close()
			return nil, err
		}
		src, err := pgqueue.New(pool, opts)
		if err != nil {
			pool.Close()
			return nil, err
		}
		pub, err := pgqueue.NewPublisher(pool, opts)
		if err != nil {
			pool.Close()
			return nil, err
		}
		return &queue{src: src, pub: pub,
			left: func(ctx context.Context) (int64, error) {
				var n int64
				err := pool.QueryRow(ctx, "SELECT count(*) FROM "+pgqueue.DefaultTable+" WHERE queue = $1", cfg.name).Scan(&n)
				return n, err
			},
			close: func() {
				src.Close()
				pool.Close()
			}}, nil
	}
	return nil, fmt.Errorf("unknown -queue %q: want memory, redis or postgres", cfg.queue)
}
