package grpcresolver_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"

	"github.com/sagaproject/saga/pkg/auth"
	"github.com/sagaproject/saga/pkg/client"
	"github.com/sagaproject/saga/pkg/client/clienttest"
	"github.com/sagaproject/saga/pkg/client/grpcresolver"
	"github.com/sagaproject/saga/pkg/httpapi"
	"github.com/sagaproject/saga/pkg/registry"
	"github.com/sagaproject/saga/pkg/server"
	"github.com/sagaproject/saga/pkg/store/embedded"
)

const roundRobin = `{"loadBalancingConfig":[{"round_robin":{}}]}`

// backend is a real gRPC server (grpc's health service) that names itself
// in the "backend" header of every answer and counts its calls.
type backend struct {
	id       string
	port     int
	srv      *grpc.Server
	calls    atomic.Int64
	lastCall atomic.Int64 // unix nanoseconds
}

func startBackend(t *testing.T, id string) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{id: id, port: ln.Addr().(*net.TCPAddr).Port}
	b.srv = grpc.NewServer(grpc.UnaryInterceptor(
		func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			b.calls.Add(1)
			b.lastCall.Store(time.Now().UnixNano())
			if err := grpc.SetHeader(ctx, metadata.Pairs("backend", id)); err != nil {
				return nil, err
			}
			return handler(ctx, req)
		}))
	healthpb.RegisterHealthServer(b.srv, health.NewServer())
	go func() { _ = b.srv.Serve(ln) }()
	t.Cleanup(b.srv.Stop)
	return b
}

// register registers b in Saga as an instance of service with b's id.
func (b *backend) register(t *testing.T, c *client.Client, service string, tags []string, meta map[string]string) {
	t.Helper()
	_, err := c.Register(context.Background(), service, registry.Registration{
		ID: b.id, Address: "127.0.0.1", Port: b.port, TTLSeconds: 600, Tags: tags, Metadata: meta,
	})
	if err != nil {
		t.Fatalf("register %s: %v", b.id, err)
	}
}

// dial connects to target with round_robin, resolving through builder.
func dial(t *testing.T, target string, builder *grpcresolver.Builder) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(target,
		grpc.WithResolvers(builder),
		grpc.WithDefaultServiceConfig(roundRobin),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial %s: %v", target, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// call makes one RPC and returns the id of the backend that answered.
func call(ctx context.Context, conn *grpc.ClientConn) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var md metadata.MD
	_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&md))
	if err != nil {
		return "", err
	}
	if ids := md.Get("backend"); len(ids) == 1 {
		return ids[0], nil
	}
	return "", errors.New("the answer names no backend")
}

// spread makes n calls and counts them by backend; any failure is fatal.
func spread(t *testing.T, conn *grpc.ClientConn, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		id, err := call(context.Background(), conn)
		if err != nil {
			t.Fatalf("call: %v", err)
		}
		got[id]++
	}
	return got
}

// waitForBackends calls until every one of want has answered.
func waitForBackends(t *testing.T, conn *grpc.ClientConn, want ...string) {
	t.Helper()
	seen := map[string]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		id, err := call(context.Background(), conn)
		if err != nil {
			t.Fatalf("call: %v", err)
		}
		seen[id] = true
		if len(seen) == len(want) {
			break
		}
	}
	for _, id := range want {
		if !seen[id] {
			t.Fatalf("backend %s got no call in 10s; seen %v", id, seen)
		}
	}
}

// caller keeps calls flowing from a few goroutines until stopped, and
// keeps the first failures.
type caller struct {
	stop   context.CancelFunc
	wg     sync.WaitGroup
	ok     atomic.Int64
	mu     sync.Mutex
	failed []error
}

func startCaller(conn *grpc.ClientConn, workers int) *caller {
	ctx, stop := context.WithCancel(context.Background())
	c := &caller{stop: stop}
	for range workers {
		c.wg.Go(func() {
			for ctx.Err() == nil {
				if _, err := call(context.Background(), conn); err != nil {
					c.mu.Lock()
					c.failed = append(c.failed, err)
					c.mu.Unlock()
				} else {
					c.ok.Add(1)
				}
				time.Sleep(time.Millisecond) // leave the two of Saga's goroutines some CPU
			}
		})
	}
	return c
}

func (c *caller) finish() (ok int64, failed []error) {
	c.stop()
	c.wg.Wait()
	return c.ok.Load(), c.failed
}

// The whole story of the issue, against real grpc servers and a real Saga:
// round_robin spreads calls over every registered backend; one
// deregistered gets no more calls within a second and may then be stopped;
// one registered gets calls within a second; no call fails on the way.
func TestRoundRobinFollowsRegistry(t *testing.T) {
	srv := clienttest.Start(t, clienttest.Options{})
	c, err := client.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	backends := []*backend{startBackend(t, "echo-1"), startBackend(t, "echo-2"), startBackend(t, "echo-3")}
	for _, b := range backends {
		b.register(t, c, "echo", nil, nil)
	}
	conn := dial(t, "saga:///echo", grpcresolver.NewBuilder(grpcresolver.WithServer(srv.URL)))

	waitForBackends(t, conn, "echo-1", "echo-2", "echo-3")
	got := spread(t, conn, 300)
	for _, b := range backends {
		if got[b.id] < 90 {
			t.Errorf("round_robin gave %s %d of 300 calls, want about 100: %v", b.id, got[b.id], got)
		}
	}

	calls := startCaller(conn, 4)

	// Deregister echo-1 while calls flow; only once it gets no more calls
	// is it stopped, as a rolling deploy would.
	gone := backends[0]
	time.Sleep(200 * time.Millisecond)
	if err := c.Deregister(context.Background(), "echo", gone.id); err != nil {
		t.Fatal(err)
	}
	deregistered := time.Now()
	time.Sleep(1500 * time.Millisecond)
	last := time.Unix(0, gone.lastCall.Load())
	if after := last.Sub(deregistered); after > time.Second {
		t.Errorf("%s got a call %v after its deregistration, want none after 1s", gone.id, after)
	} else {
		t.Logf("%s got its last call %v after its deregistration", gone.id, after.Round(time.Millisecond))
	}
	gone.srv.Stop()
	before := gone.calls.Load()

	// A new backend gets calls within a second of its registration.
	fresh := startBackend(t, "echo-4")
	fresh.register(t, c, "echo", nil, nil)
	registered := time.Now()
	for fresh.calls.Load() == 0 && time.Since(registered) < 5*time.Second {
		time.Sleep(5 * time.Millisecond)
	}
	if took := time.Since(registered); fresh.calls.Load() == 0 || took > time.Second {
		t.Errorf("%s got its first call %v after its registration, want within 1s", fresh.id, took)
	} else {
		t.Logf("%s got its first call %v after its registration", fresh.id, took.Round(time.Millisecond))
	}
	time.Sleep(300 * time.Millisecond)

	ok, failed := calls.finish()
	if len(failed) > 0 {
		t.Errorf("%d of %d calls failed on the way; first: %v", len(failed), ok+int64(len(failed)), failed[0])
	}
	if n := gone.calls.Load(); n != before {
		t.Errorf("%s got %d calls after it was stopped", gone.id, n-before)
	}
	got = spread(t, conn, 300)
	if got[gone.id] != 0 {
		t.Errorf("%s still gets calls: %v", gone.id, got)
	}
	for _, id := range []string{"echo-2", "echo-3", "echo-4"} {
		if got[id] < 90 {
			t.Errorf("%s got %d of 300 calls at the end, want about 100: %v", id, got[id], got)
		}
	}
}

// A target's query filters as a lookup does, and its authority names the
// Saga server.
func TestTargetFilters(t *testing.T) {
	srv := clienttest.Start(t, clienttest.Options{})
	c, err := client.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	startBackend(t, "v1").register(t, c, "echo", []string{"v1"}, map[string]string{"zone": "a"})
	startBackend(t, "v2-a").register(t, c, "echo", []string{"v2"}, map[string]string{"zone": "a"})
	startBackend(t, "v2-b").register(t, c, "echo", []string{"v2", "canary"}, map[string]string{"zone": "b"})
	host := strings.TrimPrefix(srv.URL, "http://")

	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"?tag=v2", []string{"v2-a", "v2-b"}},
		{"?tag=v2&tag=canary", []string{"v2-b"}},
		{"?meta=zone:a", []string{"v1", "v2-a"}},
		{"?tag=v2&meta=zone:a", []string{"v2-a"}},
	} {
		t.Run(tc.query, func(t *testing.T) {
			conn := dial(t, "saga://"+host+"/echo"+tc.query, grpcresolver.NewBuilder())
			waitForBackends(t, conn, tc.want...)
			got := spread(t, conn, 30)
			if len(got) != len(tc.want) {
				t.Errorf("calls went to %v, want only %v", got, tc.want)
			}
		})
	}
}

// saga:/// asks the server of $SAGA_ADDR, and Register makes the scheme
// known to every ClientConn of the program.
func TestRegisterAndSagaAddr(t *testing.T) {
	srv := clienttest.Start(t, clienttest.Options{})
	c, err := client.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	startBackend(t, "echo-1").register(t, c, "echo", nil, nil)
	t.Setenv("SAGA_ADDR", srv.URL)
	grpcresolver.Register()

	conn, err := grpc.NewClient("saga:///echo", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if id, err := call(context.Background(), conn); err != nil || id != "echo-1" {
		t.Fatalf("call = %q, %v; want echo-1", id, err)
	}
}

// authServer is a real Saga server over TLS with auth on, and a token of
// each role needed.
type authServer struct {
	url          string
	pool         *x509.CertPool
	read, writer string // secrets
}

func startAuthServer(t *testing.T) *authServer {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	store, err := embedded.Open(t.TempDir(), logger)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(context.Background(), server.Options{
		Store: store, Storage: "embedded", Logger: logger, Version: "test",
		Auth: httpapi.AuthSettings{Enabled: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	hs := httptest.NewTLSServer(srv.Handler())
	t.Cleanup(func() {
		srv.API().EndLongLived()
		hs.CloseClientConnections()
		hs.Close()
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Errorf("shut down: %v", err)
		}
	})
	as := &authServer{url: hs.URL, pool: x509.NewCertPool()}
	as.pool.AddCert(hs.Certificate())
	for role, secret := range map[auth.Role]*string{auth.RoleRead: &as.read, auth.RoleWrite: &as.writer} {
		_, *secret, err = srv.API().Tokens().Create(context.Background(), auth.Spec{Role: role})
		if err != nil {
			t.Fatal(err)
		}
	}
	return as
}

// The token and TLS options reach Saga: a read token over https resolves;
// without a token, the resolver's error is what the RPC fails with.
func TestTokenAndTLS(t *testing.T) {
	as := startAuthServer(t)
	trust := &tls.Config{RootCAs: as.pool, MinVersion: tls.VersionTLS12}
	c, err := client.New(as.url, client.WithToken(as.writer), client.WithTLS(trust))
	if err != nil {
		t.Fatal(err)
	}
	startBackend(t, "echo-1").register(t, c, "echo", nil, nil)
	host := strings.TrimPrefix(as.url, "https://")

	t.Run("token", func(t *testing.T) {
		// The authority is taken as https, since TLS is configured.
		conn := dial(t, "saga://"+host+"/echo",
			grpcresolver.NewBuilder(grpcresolver.WithToken(as.read), grpcresolver.WithTLS(trust)))
		if id, err := call(context.Background(), conn); err != nil || id != "echo-1" {
			t.Fatalf("call = %q, %v; want echo-1", id, err)
		}
	})
	t.Run("no token", func(t *testing.T) {
		conn := dial(t, "saga:///echo",
			grpcresolver.NewBuilder(grpcresolver.WithServer(as.url), grpcresolver.WithTLS(trust)))
		_, err := call(context.Background(), conn)
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), client.CodeUnauthenticated) {
			t.Fatalf("call without a token: %v; want Unavailable naming %s", err, client.CodeUnauthenticated)
		}
	})
}

// A service with no instance resolves to no address: RPCs fail with
// Unavailable, and succeed as soon as an instance is registered.
func TestEmptyService(t *testing.T) {
	srv := clienttest.Start(t, clienttest.Options{})
	c, err := client.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	conn := dial(t, "saga:///echo", grpcresolver.NewBuilder(grpcresolver.WithServer(srv.URL)))
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = call(ctx, conn)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("call to an empty service: %v; want Unavailable", err)
	}
	t.Logf("a call to an empty service: %v", err)
	b := startBackend(t, "echo-1")
	b.register(t, c, "echo", nil, nil)
	registered := time.Now()
	// A call that waits for the balancer shows when the address arrives.
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("call after registration: %v", err)
	}
	if took := time.Since(registered); took > time.Second {
		t.Errorf("the first instance took %v to be used, want within 1s", took)
	}
}

// When Saga goes away, grpc keeps the addresses it had: calls go on.
func TestSagaGoneKeepsAddresses(t *testing.T) {
	srv := clienttest.Start(t, clienttest.Options{})
	c, err := client.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	startBackend(t, "echo-1").register(t, c, "echo", nil, nil)
	target, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	// A front for Saga that, once gone is cancelled, breaks the blocking
	// query open and every request after it.
	gone, goAway := context.WithCancel(context.Background())
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ErrorLog = log.New(io.Discard, "", 0)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if gone.Err() != nil {
			panic(http.ErrAbortHandler) // the connection drops without an answer
		}
		ctx, cancel := context.WithCancel(r.Context())
		defer context.AfterFunc(gone, cancel)()
		proxy.ServeHTTP(w, r.WithContext(ctx))
	}))
	t.Cleanup(front.Close)
	conn := dial(t, "saga:///echo", grpcresolver.NewBuilder(grpcresolver.WithServer(front.URL)))
	if _, err := call(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
	goAway()
	for range 50 {
		if _, err := call(context.Background(), conn); err != nil {
			t.Fatalf("call with Saga gone: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A Saga that cannot be reached fails RPCs with its address in the error.
func TestUnreachableSaga(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	conn := dial(t, "saga://"+addr+"/echo", grpcresolver.NewBuilder())
	_, err = call(context.Background(), conn)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "cannot reach saga at http://"+addr) {
		t.Fatalf("call: %v; want Unavailable naming %s", err, addr)
	}
}

// A target that cannot be read fails the dial's first RPC with its reason.
func TestBadTarget(t *testing.T) {
	for target, want := range map[string]string{
		"saga:///":                       "service: must not be empty",
		"saga:///we b":                   "must match",
		"saga:///echo?tga=v2":            `unknown parameter "tga"`,
		"saga:///echo?meta=zone":         `"zone" must be key:value`,
		"saga:///echo?tag=":              "tag: must not be empty",
		"saga:///echo?status=a&status=b": "status: give it once",
	} {
		conn, err := grpc.NewClient(target,
			grpc.WithResolvers(grpcresolver.NewBuilder(grpcresolver.WithServer("127.0.0.1:1"))),
			grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err = call(ctx, conn)
			cancel()
			conn.Close()
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want an error with %q", target, err, want)
		}
	}
}

// recordingConn is the resolver's side of a grpc ClientConn, keeping what
// the resolver hands it. Embedding the interface is what grpc asks of
// stand-ins, so that new methods do not break them.
type recordingConn struct {
	resolver.ClientConn
	states chan resolver.State
	errs   chan error
}

func newRecordingConn() *recordingConn {
	return &recordingConn{states: make(chan resolver.State, 100), errs: make(chan error, 100)}
}

func (c *recordingConn) UpdateState(s resolver.State) error {
	c.states <- s
	return nil
}

func (c *recordingConn) ReportError(err error) { c.errs <- err }

func (c *recordingConn) nextState(t *testing.T) resolver.State {
	t.Helper()
	select {
	case s := <-c.states:
		return s
	case err := <-c.errs:
		t.Fatalf("resolver error: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("no state in 5s")
	}
	return resolver.State{}
}

func build(t *testing.T, target string, b *grpcresolver.Builder, cc resolver.ClientConn) resolver.Resolver {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	r, err := b.Build(resolver.Target{URL: *u}, cc, resolver.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Addresses carry their instance's id, tags and metadata; a service that
// empties gives an empty list; Close ends the watch.
func TestAddressesAndAttributes(t *testing.T) {
	srv := clienttest.Start(t, clienttest.Options{})
	c, err := client.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Register(context.Background(), "echo", registry.Registration{ID: "e1", Address: "10.0.0.5", Port: 8080,
		Tags: []string{"v2", "canary"}, Metadata: map[string]string{"zone": "a"}})
	if err != nil {
		t.Fatal(err)
	}
	cc := newRecordingConn()
	r := build(t, "saga://"+strings.TrimPrefix(srv.URL, "http://")+"/echo", grpcresolver.NewBuilder(), cc)

	s := cc.nextState(t)
	if len(s.Addresses) != 1 {
		t.Fatalf("addresses = %v, want one", s.Addresses)
	}
	a := s.Addresses[0]
	if a.Addr != "10.0.0.5:8080" || grpcresolver.InstanceID(a) != "e1" ||
		!slices.Equal(grpcresolver.Tags(a), []string{"v2", "canary"}) ||
		!maps.Equal(grpcresolver.Metadata(a), map[string]string{"zone": "a"}) {
		t.Errorf("address = %v, want 10.0.0.5:8080 with id e1, tags [v2 canary], metadata zone=a", a)
	}

	_, err = c.Register(context.Background(), "echo", registry.Registration{ID: "e2", Address: "fd00::7", Port: 9090})
	if err != nil {
		t.Fatal(err)
	}
	s = cc.nextState(t)
	if len(s.Addresses) != 2 || s.Addresses[1].Addr != "[fd00::7]:9090" && s.Addresses[0].Addr != "[fd00::7]:9090" {
		t.Errorf("addresses = %v, want two, with [fd00::7]:9090", s.Addresses)
	}

	for _, id := range []string{"e1", "e2"} {
		if err := c.Deregister(context.Background(), "echo", id); err != nil {
			t.Fatal(err)
		}
	}
	for len(s.Addresses) > 0 {
		s = cc.nextState(t)
	}
	if s.Addresses == nil {
		t.Error("an empty service gave a nil list, want an empty one")
	}

	r.Close()
	if _, err := c.Register(context.Background(), "echo", registry.Registration{ID: "e3", Address: "10.0.0.6", Port: 80}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if len(cc.states) > 0 {
		t.Errorf("a closed resolver still pushed %v", <-cc.states)
	}
}

// ResolveNow cuts the blocking query short and looks up at once.
func TestResolveNow(t *testing.T) {
	srv := clienttest.Start(t, clienttest.Options{})
	target, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var blocking, plain atomic.Int64
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ErrorLog = log.New(io.Discard, "", 0) // the cut blocking query
	counting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("index") {
			blocking.Add(1)
		} else {
			plain.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(counting.Close)

	cc := newRecordingConn()
	r := build(t, "saga:///echo", grpcresolver.NewBuilder(grpcresolver.WithServer(counting.URL)), cc)
	defer r.Close()
	cc.nextState(t)
	waitUntil(t, "a blocking query", func() bool { return blocking.Load() == 1 })
	if n := plain.Load(); n != 1 {
		t.Fatalf("%d lookups before the blocking query, want 1", n)
	}
	r.ResolveNow(resolver.ResolveNowOptions{})
	waitUntil(t, "a lookup at once", func() bool { return plain.Load() == 2 })
	waitUntil(t, "the next blocking query", func() bool { return blocking.Load() == 2 })
}

// waitUntil polls cond for up to two seconds.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s in 2s", what)
		}
	}
}

// The resolver asks for the instance keys it uses, and only those, in its
// plain and its blocking lookups.
func TestResolverAsksForTheFieldsItUses(t *testing.T) {
	srv := clienttest.Start(t, clienttest.Options{})
	target, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Register(context.Background(), "echo", registry.Registration{ID: "e1", Address: "10.0.0.5", Port: 8080, Tags: []string{"v2"}, Metadata: map[string]string{"zone": "a"}}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var asked []string
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ErrorLog = log.New(io.Discard, "", 0)
	recording := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.URL.Query().Get("fields"))
		mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(recording.Close)

	cc := newRecordingConn()
	r := build(t, "saga:///echo?tag=v2", grpcresolver.NewBuilder(grpcresolver.WithServer(recording.URL)), cc)
	defer r.Close()
	a := cc.nextState(t).Addresses[0]
	if a.Addr != "10.0.0.5:8080" || grpcresolver.InstanceID(a) != "e1" || !maps.Equal(grpcresolver.Metadata(a), map[string]string{"zone": "a"}) {
		t.Fatalf("address %v", a)
	}
	if _, err := c.Register(context.Background(), "echo", registry.Registration{ID: "e2", Address: "10.0.0.6", Port: 8080, Tags: []string{"v2"}}); err != nil {
		t.Fatal(err)
	}
	cc.nextState(t)
	mu.Lock()
	defer mu.Unlock()
	if len(asked) < 2 {
		t.Fatalf("%d lookups, want a plain and a blocking one", len(asked))
	}
	for _, fields := range asked {
		if fields != "id,address,port,tags,metadata" {
			t.Fatalf("lookups asked for fields %q", asked)
		}
	}
}
