package idempotencyredis

import (
	"context"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Auto-pipelining. Each call is one EVALSHA of a single-key script; calls
// that arrive while maxInFlight pipelines are already on their way queue
// up and go out together as one pipeline, so the server reads and writes
// many commands per system call. There are no timers: a call that finds a
// free slot goes out at once, alone or with whatever queued before it.
//
// The caller that takes a slot leads: it sends its own call with up to
// maxBatch-1 queued ones, hands each its reply and then, if more calls
// queued meanwhile, passes the slot to the oldest of them, which leads the
// next pipeline. Every command keeps its own single-key script, so a
// pipeline on a cluster client, which go-redis splits per node, changes
// nothing about where each runs.
const (
	maxInFlight = 4
	maxBatch    = 64
)

// Where a queued call stands; guarded by pipeliner.mu.
const (
	callQueued   = iota // waiting in pipeliner.queue
	callBatched         // taken into a pipeline
	callPromoted        // handed a slot: must lead the next pipeline
)

type call struct {
	ctx    context.Context
	script *redis.Script
	keys   []string
	args   []any
	state  int
	cmd    *redis.Cmd // the reply, set before wake is signalled
	wake   chan bool  // true: lead; false: cmd holds the reply
}

type pipeliner struct {
	mu       sync.Mutex
	inFlight int
	queue    []*call
}

// run sends script as part of a pipeline and returns its reply. A call
// whose ctx ends before it is sent is dropped; one whose ctx ends after
// returns ctx's error without waiting for the reply.
func (s *Store) run(ctx context.Context, script *redis.Script, keys []string, args ...any) *redis.Cmd {
	if err := ctx.Err(); err != nil {
		return errCmd(ctx, err)
	}
	c := &call{ctx: ctx, script: script, keys: keys, args: args}
	p := &s.pipe
	p.mu.Lock()
	if p.inFlight < maxInFlight {
		p.inFlight++
		p.mu.Unlock()
		s.lead(c)
		return c.cmd
	}
	c.wake = make(chan bool, 1)
	p.queue = append(p.queue, c)
	p.mu.Unlock()
	select {
	case lead := <-c.wake:
		if lead {
			s.lead(c)
		}
		return c.cmd
	case <-ctx.Done():
	}
	p.mu.Lock()
	state := c.state
	if state == callQueued {
		p.remove(c)
	}
	p.mu.Unlock()
	if state == callPromoted {
		// The slot is ours whether we want it or not; lead the queue
		// (our own call is dropped, its ctx being done).
		<-c.wake
		s.lead(c)
	}
	return errCmd(ctx, ctx.Err())
}

func errCmd(ctx context.Context, err error) *redis.Cmd {
	cmd := redis.NewCmd(ctx)
	cmd.SetErr(err)
	return cmd
}

func (p *pipeliner) remove(c *call) {
	for i, q := range p.queue {
		if q == c {
			copy(p.queue[i:], p.queue[i+1:])
			p.queue[len(p.queue)-1] = nil
			p.queue = p.queue[:len(p.queue)-1]
			return
		}
	}
}

// lead holds one in-flight slot: it sends first with the calls queued so
// far, then passes the slot on or gives it back.
func (s *Store) lead(first *call) {
	p := &s.pipe
	p.mu.Lock()
	n := min(len(p.queue), maxBatch-1)
	batch := make([]*call, 1, 1+n)
	batch[0] = first
	for _, c := range p.queue[:n] {
		c.state = callBatched
	}
	batch = append(batch, p.queue[:n]...)
	rest := copy(p.queue, p.queue[n:])
	clear(p.queue[rest:])
	p.queue = p.queue[:rest]
	p.mu.Unlock()

	s.send(batch)
	for _, c := range batch[1:] {
		c.wake <- false
	}

	p.mu.Lock()
	if len(p.queue) == 0 {
		p.inFlight--
		p.mu.Unlock()
		return
	}
	next := p.queue[0]
	next.state = callPromoted
	copy(p.queue, p.queue[1:])
	p.queue[len(p.queue)-1] = nil
	p.queue = p.queue[:len(p.queue)-1]
	p.mu.Unlock()
	next.wake <- true
}

// send runs batch as one pipeline and sets each call's cmd. Calls whose
// ctx is already done are not sent. A NOSCRIPT reply (the server's script
// cache was flushed) is answered by SCRIPT LOAD of the scripts concerned
// and a second pipeline of those commands; should the cache be flushed yet
// again in between, each remaining one falls back to Script.Run, which
// sends EVAL on NOSCRIPT.
func (s *Store) send(batch []*call) {
	var ctx context.Context
	live := batch[:0:0]
	for _, c := range batch {
		if err := c.ctx.Err(); err != nil {
			c.cmd = errCmd(c.ctx, err)
			continue
		}
		if ctx == nil {
			// Keep the values (tracing hooks) but not the cancellation
			// of one caller: the pipeline carries the others too.
			ctx = context.WithoutCancel(c.ctx)
		}
		live = append(live, c)
	}
	if len(live) == 0 {
		return
	}
	if len(live) == 1 {
		c := live[0]
		c.cmd = c.script.Run(c.ctx, s.client, c.keys, c.args...)
		return
	}
	pipe := s.client.Pipeline()
	for _, c := range live {
		c.cmd = pipe.EvalSha(ctx, c.script.Hash(), c.keys, c.args...)
	}
	_, _ = pipe.Exec(ctx) // errors are on each command
	retry := noScript(live)
	if len(retry) == 0 {
		return
	}
	loaded := map[*redis.Script]bool{}
	for _, c := range retry {
		if !loaded[c.script] {
			loaded[c.script] = true
			_ = c.script.Load(ctx, s.client).Err() // a failure shows below
		}
	}
	pipe = s.client.Pipeline()
	for _, c := range retry {
		c.cmd = pipe.EvalSha(ctx, c.script.Hash(), c.keys, c.args...)
	}
	_, _ = pipe.Exec(ctx)
	for _, c := range noScript(retry) {
		c.cmd = c.script.Run(ctx, s.client, c.keys, c.args...)
	}
}

// noScript returns the calls whose reply is a NOSCRIPT error.
func noScript(calls []*call) []*call {
	var out []*call
	for _, c := range calls {
		if err := c.cmd.Err(); err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			out = append(out, c)
		}
	}
	return out
}
