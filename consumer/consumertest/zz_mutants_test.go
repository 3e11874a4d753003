package consumertest_test

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/consumertest"
)

type mut struct {
	name string
	q    *consumer.MemQueue
	mu   sync.Mutex
	n    int
	last map[string]*mdel
}

type mdel struct {
	consumer.Delivery
	m   *mut
	msg *consumer.Message
	dl  time.Time
}

func (m *mut) Publish(ctx context.Context, msgs ...consumer.Message) error {
	for i := range msgs {
		switch m.name {
		case "fixedID":
			if msgs[i].ID == "" {
				msgs[i].ID = "fixed"
			}
		case "nowEnqueued":
			msgs[i].EnqueuedAt = time.Now()
		case "dropHeaders":
			msgs[i].Headers = nil
		}
	}
	return m.q.Publish(ctx, msgs...)
}

func (m *mut) Fetch(ctx context.Context, max int) ([]consumer.Delivery, error) {
	switch m.name {
	case "ignoreMax":
		max++
	case "nilOnCancel":
		ds, err := m.q.Fetch(ctx, max)
		if err != nil {
			return nil, nil
		}
		return m.wrap(ds), nil
	case "noBlock":
		c, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		ds, err := m.q.Fetch(c, max)
		if err != nil && ctx.Err() == nil {
			return nil, nil
		}
		return m.wrap(ds), err
	case "swallowOnCancel":
		ds, err := m.q.Fetch(ctx, max)
		if err != nil {
			go m.q.Fetch(context.Background(), 1)
		}
		return m.wrap(ds), err
	case "dupInBatch":
		ds, err := m.q.Fetch(ctx, max)
		m.mu.Lock()
		m.n++
		n := m.n
		m.mu.Unlock()
		if err == nil && len(ds) < max && n%2 == 0 {
			ds = append(ds, ds[0])
		}
		return m.wrap(ds), err
	}
	ds, err := m.q.Fetch(ctx, max)
	return m.wrap(ds), err
}

func (m *mut) wrap(ds []consumer.Delivery) []consumer.Delivery {
	out := make([]consumer.Delivery, len(ds))
	for i, d := range ds {
		msg := *d.Message()
		if m.name == "attempt1" {
			msg.Attempt = 1
		}
		md := &mdel{Delivery: d, m: m, msg: &msg, dl: d.Deadline()}
		out[i] = md
		m.mu.Lock()
		if m.last == nil {
			m.last = map[string]*mdel{}
		}
		m.last[msg.ID] = md
		m.mu.Unlock()
	}
	return out
}

func (d *mdel) Message() *consumer.Message { return d.msg }
func (d *mdel) Deadline() time.Time {
	switch d.m.name {
	case "zeroDeadline":
		return time.Time{}
	case "lateDeadline":
		return d.Delivery.Deadline().Add(time.Second)
	case "extendNoop":
		return d.dl
	}
	return d.Delivery.Deadline()
}
func (d *mdel) Ack(ctx context.Context) error {
	switch d.m.name {
	case "ackNoop":
		return nil
	case "staleAckDeletes":
		err := d.Delivery.Ack(ctx)
		if err != nil {
			d.m.mu.Lock()
			l := d.m.last[d.msg.ID]
			d.m.mu.Unlock()
			l.Delivery.Ack(ctx)
		}
		return err
	case "staleOK":
		d.Delivery.Ack(ctx)
		return nil
	}
	return d.Delivery.Ack(ctx)
}
func (d *mdel) Nack(ctx context.Context, delay time.Duration) error {
	switch d.m.name {
	case "nackNoop":
		return nil
	case "nackNoDelay":
		delay = 0
	case "staleOK":
		d.Delivery.Nack(ctx, delay)
		return nil
	case "staleNackRepublish":
		err := d.Delivery.Nack(ctx, delay)
		if err != nil {
			d.m.q.Publish(ctx, *d.msg)
		}
		return err
	case "nackRepublish":
		d.Delivery.Ack(ctx)
		return d.m.q.Publish(ctx, *d.msg)
	}
	return d.Delivery.Nack(ctx, delay)
}
func (d *mdel) Extend(ctx context.Context) error {
	switch d.m.name {
	case "extendNoop":
		d.dl = time.Now().Add(400 * time.Millisecond)
		return nil
	case "staleOK":
		d.Delivery.Extend(ctx)
		return nil
	}
	return d.Delivery.Extend(ctx)
}

func TestMutant(t *testing.T) {
	name := os.Getenv("MUTANT")
	consumertest.RunWithOptions(t, func(t *testing.T, lease time.Duration) (consumer.Source, consumer.Publisher) {
		if name == "shortLease" {
			lease /= 3
		}
		q, err := consumer.NewMemQueue(consumer.MemQueueConfig{VisibilityTimeout: lease})
		if err != nil {
			t.Fatal(err)
		}
		m := &mut{name: name, q: q}
		return m, m
	}, consumertest.Options{Wait: 3 * time.Second, Messages: 200})
}
