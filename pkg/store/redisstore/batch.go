package redisstore

import (
	"context"
	"errors"
	"fmt"
	"sync"

	goredis "github.com/redis/go-redis/v9"
)

// Writes share round trips, as the embedded store's writes share fsyncs:
// a write that finds no round trip in flight is sent at once, by its own
// caller; the writes that arrive meanwhile queue and go out together in
// the next one, as one pipeline. The heartbeats of one service in a batch
// are one call of heartbeatScript, so they also share the fixed cost of
// running Lua. Each write still gets its own answer.

// writeCall is one register, heartbeat or deregister in a batch.
type writeCall struct {
	ctx     context.Context
	op      string // "register", "heartbeat" or "deregister"
	service string
	names   serviceNames // heartbeat: the service's keys and notice head
	args    []any        // register, deregister: the script's own arguments; heartbeat: id, status, now, held rev

	raw   string // the notice answered; "" when the instance is unknown
	acked int64  // with minAcks: replicas that confirmed the batch
	err   error
	done  chan struct{}
}

// batcher queues the writes that arrive while a round trip is in flight.
type batcher struct {
	mu    sync.Mutex
	busy  bool
	queue []*writeCall
}

// do sends c, alone when nothing is in flight, else in the next batch, and
// waits for its answer or its context's end.
func (s *Store) do(c *writeCall) error {
	c.done = make(chan struct{})
	b := &s.batch
	b.mu.Lock()
	if b.busy {
		b.queue = append(b.queue, c)
		b.mu.Unlock()
	} else {
		b.busy = true
		b.mu.Unlock()
		s.flush([]*writeCall{c})
		s.next()
	}
	select {
	case <-c.done:
		return c.err
	case <-c.ctx.Done():
		return c.ctx.Err() // the write may still be made, as after a timeout
	}
}

// next sends what queued during the last round trip, from a goroutine of
// its own so that the caller that sent it can answer now, or marks the
// batcher idle.
func (s *Store) next() {
	b := &s.batch
	b.mu.Lock()
	calls := b.queue
	b.queue = nil
	b.busy = len(calls) > 0
	b.mu.Unlock()
	if len(calls) > 0 {
		go func() {
			s.flush(calls)
			s.next()
		}()
	}
}

// scriptCall is one EVALSHA of a batch and the writes it answers.
type scriptCall struct {
	script *goredis.Script
	keys   []string
	args   []any
	calls  []*writeCall
	cmd    *goredis.Cmd
}

// flush makes one round trip for calls (per node, with WAIT) and hands
// each its answer.
func (s *Store) flush(calls []*writeCall) {
	var scripts []*scriptCall
	beats := map[string]*scriptCall{} // the heartbeats of each service share one call
	pulled := "0"
	if s.quietHeartbeats() {
		pulled = "1"
	}
	for _, c := range calls {
		if err := c.ctx.Err(); err != nil {
			c.err = err // gone before it was sent: not made
			close(c.done)
			continue
		}
		if c.op == "heartbeat" {
			if sc := beats[c.service]; sc != nil {
				sc.args = append(sc.args, c.args...)
				sc.calls = append(sc.calls, c)
				continue
			}
			args := append([]any{changeChannel, c.names.head, pulled}, c.args...)
			sc := &scriptCall{script: heartbeatScript, keys: c.names.keys, args: args, calls: []*writeCall{c}}
			beats[c.service] = sc
			scripts = append(scripts, sc)
			continue
		}
		script := registerScript
		if c.op == "deregister" {
			script = deregisterScript
		}
		scripts = append(scripts, &scriptCall{script: script, keys: serviceKeys(c.service), args: s.scriptArgs(c.service, c.args...), calls: []*writeCall{c}})
	}
	if len(scripts) == 0 {
		return
	}
	// The batch is not any one caller's: it runs to its own timeout.
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout+s.ackTimeout)
	defer cancel()
	// Heartbeats never wait for replicas; registrations and
	// deregistrations do, with minAcks, beside them.
	var plain, acked []*scriptCall
	for _, sc := range scripts {
		if s.minAcks > 0 && sc.script != heartbeatScript {
			acked = append(acked, sc)
		} else {
			plain = append(plain, sc)
		}
	}
	var wg sync.WaitGroup
	if len(acked) > 0 {
		wg.Go(func() { s.runAcked(ctx, acked) })
	}
	switch len(plain) {
	case 0:
	case 1: // a lone write: EVALSHA, and EVAL after NOSCRIPT
		sc := plain[0]
		sc.cmd = sc.script.Run(ctx, s.client, sc.keys, sc.args...)
		sc.answer(nil, 0)
	default:
		_, err := runPipelined(ctx, s.client, plain, nil)
		for _, sc := range plain {
			sc.answer(err, 0)
		}
	}
	wg.Wait()
}

// answer hands each write of sc its part of the script's reply.
func (sc *scriptCall) answer(err error, acked int64) {
	var raws []string
	if err == nil {
		if sc.script == heartbeatScript {
			raws, err = sc.cmd.StringSlice()
			if err == nil && len(raws) != len(sc.calls) {
				err = errors.New("heartbeat script answered for another number of instances")
			}
		} else {
			var raw string
			raw, err = sc.cmd.Text()
			if errors.Is(err, goredis.Nil) {
				raw, err = "", nil
			}
			raws = []string{raw}
		}
	}
	for i, c := range sc.calls {
		if err == nil {
			c.raw, c.acked = raws[i], acked
		}
		c.err = err
		close(c.done)
	}
}

// pipeliner is what a batch is sent on: the store's client, or one node
// of it for WAIT.
type pipeliner interface {
	goredis.Scripter
	Pipelined(ctx context.Context, fn func(goredis.Pipeliner) error) ([]goredis.Cmder, error)
}

// runPipelined sends scripts in one pipeline, then loads the scripts that
// Redis did not hold (NOSCRIPT: a restarted or newly promoted Redis) and
// sends those calls again. With wait, each pipeline ends with that WAIT,
// whose answer it returns.
func runPipelined(ctx context.Context, conn pipeliner, scripts []*scriptCall, wait []any) (int64, error) {
	pending := scripts
	var waitCmd *goredis.Cmd
	for attempt := 0; ; attempt++ {
		_, _ = conn.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for _, sc := range pending {
				sc.cmd = sc.script.EvalSha(ctx, p, sc.keys, sc.args...)
			}
			if wait != nil {
				waitCmd = p.Do(ctx, wait...)
			}
			return nil
		})
		var retry []*scriptCall
		for _, sc := range pending {
			if isNoScript(sc.cmd.Err()) {
				retry = append(retry, sc)
			}
		}
		if len(retry) == 0 || attempt > 0 {
			break
		}
		loaded := map[*goredis.Script]bool{}
		for _, sc := range retry {
			if !loaded[sc.script] {
				if err := sc.script.Load(ctx, conn).Err(); err != nil {
					return 0, err
				}
				loaded[sc.script] = true
			}
		}
		pending = retry
	}
	if waitCmd == nil {
		return 0, nil
	}
	n, err := waitCmd.Int64()
	if err != nil {
		return 0, fmt.Errorf("wait for replicas: %w", err)
	}
	return n, nil
}

// runAcked sends a batch that holds registrations or deregistrations with
// WAIT: per master, one pipeline of its scripts ending in WAIT, on one
// connection, so WAIT counts the replicas that have the whole batch. It
// answers each script call.
func (s *Store) runAcked(ctx context.Context, scripts []*scriptCall) {
	groups := map[*goredis.Client][]*scriptCall{}
	switch c := s.client.(type) {
	case *goredis.ClusterClient:
		for _, sc := range scripts {
			node, err := c.MasterForKey(ctx, sc.keys[0])
			if err != nil {
				sc.answer(err, 0)
				continue
			}
			groups[node] = append(groups[node], sc)
		}
	case *goredis.Client:
		groups[c] = scripts
	default:
		for _, sc := range scripts {
			sc.answer(fmt.Errorf("WAIT is not supported on %T", s.client), 0)
		}
	}
	var wg sync.WaitGroup
	for node, group := range groups {
		wg.Go(func() {
			n, err := runPipelined(ctx, node, group, []any{"WAIT", s.minAcks, s.ackTimeout.Milliseconds()})
			for _, sc := range group {
				sc.answer(err, n)
			}
		})
	}
	wg.Wait()
}
