package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sagaproject/saga/pkg/store/redisstore/redistest"
)

// Robustness tests, in the spirit of etcd's: several clients write and read
// through real saga binaries on one store while every request and answer
// is recorded with its start and end; then a checker holds the history to
// the model written down in robustness_check_test.go (read-your-writes on
// each saga, agreement within a second, every change seen by watchers, and
// the final state equal to the store's).

var robustnessDuration = flag.Duration("robustness.duration", 0,
	"how long the two-saga robustness run writes (the others run for half as long); 0 keeps each run short enough for make test")

const (
	robustTTL        = 600 // seconds: nothing expires during a run
	robustMaxLive    = 8   // instances a writer keeps registered at most
	robustBlockWait  = time.Second
	robustFirstShown = 12 // violations shown in a failure
	// robustReportLag is how long past agreeWithin the final phase waits
	// for the last events to reach the streams before it reads them.
	robustReportLag = 3 * time.Second
)

// robustScenario is one run: the sagas (on one store), the services the
// clients write, how many writers go through each saga, for how long, and
// how to read the store's own state at the end (nil when it cannot be).
type robustScenario struct {
	sagas          []*sagaProcess
	services       []string
	writersPerSaga int
	duration       time.Duration
	store          func(ctx context.Context, service string) (storeState, error)
}

// robustLength is a run's length: short by default, or scaled from
// -robustness.duration, whose value is the two-saga run's.
func robustLength(short, twoSagaShort time.Duration) time.Duration {
	if *robustnessDuration <= 0 {
		return short
	}
	return time.Duration(float64(*robustnessDuration) * float64(short) / float64(twoSagaShort))
}

func TestRobustnessTwoSagasOnRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	runRobustness(t, robustScenario{
		sagas:          []*sagaProcess{startRedisSaga(t, srv.URL()), startRedisSaga(t, srv.URL())},
		services:       []string{"alpha", "beta"},
		writersPerSaga: 3,
		duration:       robustLength(6*time.Second, 6*time.Second),
		store:          redisStoreState(srv.Client()),
	})
}

func TestRobustnessThreeSagasOnRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	runRobustness(t, robustScenario{
		sagas:          []*sagaProcess{startRedisSaga(t, srv.URL()), startRedisSaga(t, srv.URL()), startRedisSaga(t, srv.URL())},
		services:       []string{"gamma"},
		writersPerSaga: 2,
		duration:       robustLength(3*time.Second, 6*time.Second),
		store:          redisStoreState(srv.Client()),
	})
}

func TestRobustnessEmbedded(t *testing.T) {
	t.Parallel()
	// Many clients from one address: the per-client rates would refuse them.
	p := startSaga(t, sagaEnv(t, "SAGA_DATA_DIR="+t.TempDir(), "SAGA_LIMITS_READ_RATE=0", "SAGA_LIMITS_WRITE_RATE=0"), "serve", "--port", "0")
	runRobustness(t, robustScenario{
		sagas:          []*sagaProcess{p},
		services:       []string{"delta"},
		writersPerSaga: 4,
		duration:       robustLength(3*time.Second, 6*time.Second),
	})
}

// redisStoreState reads a service's instances and index straight from
// Redis (docs/redis.md names the keys).
func redisStoreState(client *goredis.Client) func(context.Context, string) (storeState, error) {
	return func(ctx context.Context, service string) (storeState, error) {
		ids, err := client.HKeys(ctx, "service:{"+service+"}:instances").Result()
		if err != nil {
			return storeState{}, err
		}
		index, err := client.Get(ctx, "service:{"+service+"}:index").Uint64()
		if errors.Is(err, goredis.Nil) {
			index, err = 0, nil
		}
		slices.Sort(ids)
		return storeState{IDs: ids, Index: index}, err
	}
}

// robustRun records one run's history.
type robustRun struct {
	t      *testing.T
	sc     robustScenario
	names  []string
	client *http.Client
	start  time.Time

	mu     sync.Mutex
	ops    []op
	recent []op // the last acknowledged writes, for the readers' gets
}

func runRobustness(t *testing.T, sc robustScenario) {
	t.Helper()
	// One client with keep-alive for every request; enough idle
	// connections that the goroutines do not keep dialling.
	transport := &http.Transport{MaxIdleConns: 128, MaxIdleConnsPerHost: 32, IdleConnTimeout: time.Minute}
	r := &robustRun{t: t, sc: sc, client: &http.Client{Transport: transport, Timeout: 20 * time.Second}}
	t.Cleanup(transport.CloseIdleConnections)
	for i := range sc.sagas {
		r.names = append(r.names, string(rune('A'+i)))
	}

	// Watchers first: every stream is subscribed before the first write.
	logs := make([]*eventLog, len(sc.sagas))
	for i, p := range sc.sagas {
		logs[i] = followEvents(t, p, "saga "+r.names[i], sc.services...)
	}

	r.start = time.Now()
	deadline := r.start.Add(sc.duration)
	var wg sync.WaitGroup
	writer := 0
	for saga := range sc.sagas {
		for range sc.writersPerSaga {
			n := writer
			writer++
			wg.Go(func() { r.write(n, saga, deadline) })
		}
		wg.Go(func() { r.read(saga, deadline) })
	}
	lastIndex := make([][]uint64, len(sc.sagas)) // per saga and service: the blocking loop's last index
	for saga := range sc.sagas {
		lastIndex[saga] = make([]uint64, len(sc.services))
		for s, service := range sc.services {
			wg.Go(func() { lastIndex[saga][s] = r.block(saga, service, deadline) })
		}
	}
	wg.Wait()
	var writesEnded time.Time
	for _, o := range r.ops {
		if o.isWrite() && o.End.After(writesEnded) {
			writesEnded = o.End
		}
	}
	time.Sleep(time.Until(writesEnded.Add(agreeWithin)))

	// The final state: the store's, and every saga's lookup and blocking
	// lookup at the last index its loop saw.
	h := &history{Start: r.start, Sagas: r.names, Services: sc.services}
	if sc.store != nil {
		h.Store = map[string]storeState{}
		for _, service := range sc.services {
			st, err := sc.store(t.Context(), service)
			if err != nil {
				t.Fatalf("read the store's state of %s: %v", service, err)
			}
			h.Store[service] = st
		}
	}
	finals := make(chan op, 2*len(sc.sagas)*len(sc.services))
	var fwg sync.WaitGroup
	for saga := range sc.sagas {
		for s, service := range sc.services {
			fwg.Go(func() { finals <- r.lookup("final", saga, service) })
			fwg.Go(func() { finals <- r.blocking("final", saga, service, lastIndex[saga][s]) })
		}
	}
	fwg.Wait()
	close(finals)
	for f := range finals {
		h.Final = append(h.Final, f)
	}

	// The streams had agreeWithin already; give a loaded machine a little
	// longer before counting what they missed.
	want := 0
	for _, o := range r.ops {
		if o.acked() {
			want++
		}
	}
	settle := time.Now().Add(robustReportLag)
	for _, l := range logs {
		for len(l.all()) < want && time.Now().Before(settle) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	for i, l := range logs {
		s := stream{Saga: r.names[i]}
		for _, ev := range l.all() {
			s.Events = append(s.Events, streamEvent{Type: ev.Type, Service: ev.Data.Service, ID: ev.Data.Instance.ID, Index: ev.Data.Index})
		}
		l.mu.Lock()
		s.Ended = l.ended
		l.mu.Unlock()
		h.Streams = append(h.Streams, s)
	}
	r.mu.Lock()
	h.Ops = r.ops
	r.mu.Unlock()

	vs := checkHistory(h, agreeWithin)
	t.Logf("%s", r.summary(h))
	if want == 0 {
		t.Fatal("no write was acknowledged: the run proves nothing")
	}
	if len(vs) > 0 {
		t.Errorf("the recorded history breaks the robustness model (robustness_check_test.go); %s", describeViolations(h, vs, robustFirstShown))
	}
}

// summary counts what a run did.
func (r *robustRun) summary(h *history) string {
	counts := map[opKind]int{}
	acked := 0
	for _, o := range h.Ops {
		counts[o.Kind]++
		if o.acked() {
			acked++
		}
	}
	events := 0
	for _, s := range h.Streams {
		events += len(s.Events)
	}
	return fmt.Sprintf("%d sagas, %s of writes: %d registers, %d deregisters (%d acknowledged), %d lookups, %d gets, %d blocking lookups, %d events on %d streams",
		len(h.Sagas), r.sc.duration, counts[opRegister], counts[opDeregister], acked,
		counts[opLookup], counts[opGet], counts[opBlocking], events, len(h.Streams))
}

func (r *robustRun) record(o op) op {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, o)
	if o.acked() {
		const keep = 64
		if len(r.recent) == keep {
			r.recent = slices.Delete(r.recent, 0, 1)
		}
		r.recent = append(r.recent, o)
	}
	return o
}

// write is one writer client: it registers new ids as fast as it can,
// deregisters some of its own, and reads after each write through the saga
// it wrote to.
func (r *robustRun) write(n, saga int, deadline time.Time) {
	rng := rand.New(rand.NewPCG(uint64(n), uint64(r.start.UnixNano())))
	name := fmt.Sprintf("c%d", n)
	type owned struct{ service, id string }
	var live []owned
	for counter := 0; time.Now().Before(deadline); {
		var w op
		if len(live) >= robustMaxLive || (len(live) > 0 && rng.IntN(3) == 0) {
			i := rng.IntN(len(live))
			x := live[i]
			live = slices.Delete(live, i, i+1)
			w = r.deregister(name, saga, x.service, x.id)
		} else {
			counter++
			x := owned{r.sc.services[rng.IntN(len(r.sc.services))], fmt.Sprintf("%s-%d", name, counter)}
			w = r.register(name, saga, x.service, x.id)
			if w.acked() {
				live = append(live, x)
			}
		}
		r.get(name, saga, w.Service, w.ID)
		r.lookup(name, saga, w.Service)
	}
}

// read is a reader through one saga: it looks up every service in turn
// and gets an instance that some client just wrote, through any saga.
func (r *robustRun) read(saga int, deadline time.Time) {
	rng := rand.New(rand.NewPCG(uint64(1000+saga), uint64(r.start.UnixNano())))
	name := "reader-" + r.names[saga]
	for time.Now().Before(deadline) {
		for _, service := range r.sc.services {
			r.lookup(name, saga, service)
		}
		r.mu.Lock()
		var w op
		if len(r.recent) > 0 {
			w = r.recent[rng.IntN(len(r.recent))]
		}
		r.mu.Unlock()
		if w.ID != "" {
			r.get(name, saga, w.Service, w.ID)
		}
	}
}

// block is a blocking-query loop through one saga: it waits on the index
// each answer gave. It returns the last index it saw.
func (r *robustRun) block(saga int, service string, deadline time.Time) uint64 {
	name := "blocker-" + r.names[saga]
	var index uint64
	for time.Now().Before(deadline) {
		o := r.blocking(name, saga, service, index)
		r.record(o)
		if !o.answered() {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		index = o.Index
	}
	return index
}

func (r *robustRun) register(client string, saga int, service, id string) op {
	body := fmt.Sprintf(`{"id":%q,"address":"10.0.0.1","port":8080,"ttl_seconds":%d}`, id, robustTTL)
	o := op{Client: client, Saga: r.names[saga], Kind: opRegister, Service: service, ID: id}
	r.do(&o, http.MethodPost, r.sc.sagas[saga].url("/api/v1/services/"+service+"/instances"), body, nil)
	return r.record(o)
}

func (r *robustRun) deregister(client string, saga int, service, id string) op {
	o := op{Client: client, Saga: r.names[saga], Kind: opDeregister, Service: service, ID: id}
	r.do(&o, http.MethodDelete, r.sc.sagas[saga].url("/api/v1/services/"+service+"/instances/"+id), "", nil)
	return r.record(o)
}

func (r *robustRun) get(client string, saga int, service, id string) op {
	o := op{Client: client, Saga: r.names[saga], Kind: opGet, Service: service, ID: id}
	r.do(&o, http.MethodGet, r.sc.sagas[saga].url("/api/v1/services/"+service+"/instances/"+id), "", nil)
	return r.record(o)
}

// lookup records a plain lookup, except for the final one (client
// "final"), which the caller keeps apart.
func (r *robustRun) lookup(client string, saga int, service string) op {
	o := op{Client: client, Saga: r.names[saga], Kind: opLookup, Service: service}
	var body e2eLookup
	r.do(&o, http.MethodGet, r.sc.sagas[saga].url("/api/v1/services/"+service+"?status=any"), "", &body)
	o.Index, o.IDs = body.Index, body.ids()
	if client == "final" {
		return o
	}
	return r.record(o)
}

// blocking sends one blocking lookup; the caller records it.
func (r *robustRun) blocking(client string, saga int, service string, index uint64) op {
	o := op{Client: client, Saga: r.names[saga], Kind: opBlocking, Service: service, AskedIndex: index}
	q := url.Values{"status": {"any"}, "index": {strconv.FormatUint(index, 10)}, "wait": {robustBlockWait.String()}}
	var body e2eLookup
	r.do(&o, http.MethodGet, r.sc.sagas[saga].url("/api/v1/services/"+service+"?"+q.Encode()), "", &body)
	o.Index, o.IDs = body.Index, body.ids()
	return o
}

// do sends one request, filling in o's times, status and error, and
// decodes a 200 answer into out (when not nil). A get takes its index from
// X-Saga-Index.
func (r *robustRun) do(o *op, method, u, body string, out any) {
	var reader io.Reader
	if body != "" {
		reader = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(r.t.Context(), method, u, reader)
	if err != nil {
		r.t.Errorf("%s %s: %v", method, u, err)
		return
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	o.Start = time.Now()
	defer func() { o.End = time.Now() }()
	resp, err := r.client.Do(req)
	if err != nil {
		o.Err = err.Error()
		return
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		o.Err = err.Error()
		return
	}
	o.Status = resp.StatusCode
	if h := resp.Header.Get(indexHeaderName); h != "" {
		o.Index, _ = strconv.ParseUint(h, 10, 64)
	}
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(data, out); err != nil {
			o.Err = fmt.Sprintf("decode %.80q: %v", data, err)
		}
	}
}

// indexHeaderName is the header that carries a read's index (SPEC §2).
const indexHeaderName = "X-Saga-Index"
