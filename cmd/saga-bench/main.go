// Command saga-bench drives a running Saga server over loopback with
// concurrent clients and prints throughput and latency per scenario:
// lookup, heartbeat, register and watch (blocking-query wake-up), and, when
// asked for, big (lookups of a small service beside a big one that many
// clients read), checks (thousands of instances with active health
// checks, beside the lookup load) and lean (clients that decode every
// answer, full or lean, with gzip or without).
//
// With -ceiling it also starts a bare net/http server, in a process of its
// own, that answers with the very bytes Saga answered, and measures it the
// same way: the figures then sit next to what the machine can do at best.
//
//	saga-bench -addr 127.0.0.1:8030 -c 32 -d 10s -scenario all -ceiling
//	saga-bench -addr 127.0.0.1:8030 -d 60s -scenario big -instances 200000 -pid 1234
//	saga-bench -addr 127.0.0.1:8030 -d 30s -scenario checks -checked 10000 -pid 1234
//	saga-bench -addr 127.0.0.1:8030 -c 8 -d 20s -scenario lean -instances 100
//	SAGA_TOKEN=saga_… saga-bench -addr https://127.0.0.1:8030 -cacert cert.pem -scenario lookup,heartbeat
//
// With -token (or SAGA_TOKEN) every request carries the token; with an
// https:// -addr the clients speak TLS, trusting the CAs in -cacert (or
// SAGA_CACERT), else the system's. The ceiling speaks plain HTTP and
// checks no token either way.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/sagaproject/saga/pkg/client"
	"github.com/sagaproject/saga/pkg/tlsfiles"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is what the flags say.
type config struct {
	addr      string
	clients   int
	duration  time.Duration
	warmup    time.Duration
	scenarios []string
	ceiling   bool
	instances int
	// instancesSet is whether -instances was given: lean's default differs.
	instancesSet bool
	watchers     int
	// registerTTL is the TTL of the instances that register creates:
	// short by default, so that they leave the server soon after the run.
	registerTTL time.Duration
	rounds      int
	// readers is how many clients read the big scenario's big service.
	readers int
	// readOnChange makes big's readers wait for each change of the big
	// service with a blocking query rather than read it in a loop.
	readOnChange bool
	// heartbeatRate paces big's heartbeats, a second; 0: one client sends
	// them one after another, as fast as the server answers.
	heartbeatRate int
	// checked is how many instances with HTTP checks checks registers.
	checked int
	// pid is the server's process id, for its peak RSS and CPU; 0: not known.
	pid int
	// keep leaves the big scenario's instances on the server.
	keep bool
	// token is sent as a bearer token with every request; "": none.
	token string
	// caCert is a PEM file of the CAs to trust for https; "": the system's.
	caCert string
}

// allScenarios are the scenarios that all runs.
var allScenarios = []string{"lookup", "heartbeat", "register", "watch"}

// knownScenarios adds those that run only when named: big registers a
// large service and reads it hard, for minutes at full size; checks
// registers thousands of instances with active health checks; lean
// measures four kinds of clients in turn, four times -d.
var knownScenarios = append(slices.Clone(allScenarios), "big", "checks", "lean")

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("saga-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg      config
		scenario string
		serve    string
	)
	fs.StringVar(&cfg.addr, "addr", client.DefaultAddr, "address of the Saga server to drive")
	fs.IntVar(&cfg.clients, "c", 32, "concurrent clients")
	fs.DurationVar(&cfg.duration, "d", 10*time.Second, "measured duration of each scenario")
	fs.DurationVar(&cfg.warmup, "warmup", time.Second, "unmeasured load before each measurement")
	fs.StringVar(&scenario, "scenario", "all", "lookup, heartbeat, register, watch, big, checks, lean, or all (all but big, checks and lean; comma-separated list allowed)")
	fs.BoolVar(&cfg.ceiling, "ceiling", false, "also measure a bare net/http server answering the same bytes")
	fs.IntVar(&cfg.rounds, "rounds", 5, "with -ceiling, alternate between Saga and the ceiling this many times; with lean, between its kinds of clients")
	fs.IntVar(&cfg.instances, "instances", 10, "instances of the service that lookup (or big) reads; lean's default is 100")
	fs.DurationVar(&cfg.registerTTL, "ttl", 30*time.Second, "TTL of the instances that register creates")
	fs.IntVar(&cfg.watchers, "watchers", 1, "blocking queries waiting on the service that watch changes")
	fs.IntVar(&cfg.readers, "readers", 8, "clients that read the big service of big")
	fs.BoolVar(&cfg.readOnChange, "read-on-change", false, "with big: readers wait for each change of the big service (blocking queries) instead of reading it in a loop")
	fs.IntVar(&cfg.heartbeatRate, "heartbeat-rate", 0, "with big: heartbeats a second to the big service (0: one client, one after another, as fast as they are answered)")
	fs.IntVar(&cfg.checked, "checked", 10000, "instances with 10s HTTP checks that checks registers")
	fs.IntVar(&cfg.pid, "pid", 0, "the server's process id, for big and checks to report its RSS and CPU from /proc")
	fs.BoolVar(&cfg.keep, "keep", false, "leave the instances of big registered after the run")
	// Not defaulted from the environment here, so that -help does not print a secret.
	fs.StringVar(&cfg.token, "token", "", "API token to send with every request (default $SAGA_TOKEN)")
	fs.StringVar(&cfg.caCert, "cacert", "", "PEM file of the CAs that an https:// server's certificate must chain to (default $SAGA_CACERT, else the system's)")
	fs.StringVar(&serve, "serve-ceiling", "", "internal: serve the answers in this file as the ceiling server")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	fs.Visit(func(f *flag.Flag) { cfg.instancesSet = cfg.instancesSet || f.Name == "instances" })
	if serve != "" {
		if err := serveCeiling(ctx, serve, stdin, stdout); err != nil {
			fmt.Fprintln(stderr, "saga-bench: "+err.Error())
			return 1
		}
		return 0
	}
	if cfg.token == "" {
		cfg.token = os.Getenv("SAGA_TOKEN")
	}
	if cfg.caCert == "" {
		cfg.caCert = os.Getenv("SAGA_CACERT")
	}
	var err error
	if cfg.scenarios, err = parseScenarios(scenario); err != nil {
		fmt.Fprintln(stderr, "saga-bench: "+err.Error())
		return 2
	}
	if cfg.clients < 1 || cfg.duration <= 0 || cfg.instances < 1 || cfg.watchers < 1 || cfg.rounds < 1 || cfg.readers < 1 || cfg.checked < 1 || cfg.pid < 0 || cfg.heartbeatRate < 0 || cfg.registerTTL < time.Second {
		fmt.Fprintln(stderr, "saga-bench: -c, -d, -instances, -checked, -watchers, -readers and -rounds must be positive, -pid and -heartbeat-rate not negative, -ttl at least 1s")
		return 2
	}
	if err := bench(ctx, cfg, stdout); err != nil {
		fmt.Fprintln(stderr, "saga-bench: "+err.Error())
		return 1
	}
	return 0
}

// tlsConfig is the clients' TLS configuration: nil, for Go's defaults,
// unless -cacert names the CAs to trust.
func (cfg config) tlsConfig() (*tls.Config, error) {
	if cfg.caCert == "" {
		return nil, nil
	}
	return tlsfiles.ClientConfig(cfg.caCert, "", "")
}

func parseScenarios(s string) ([]string, error) {
	if s == "all" {
		return allScenarios, nil
	}
	var out []string
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(knownScenarios, name) {
			return nil, fmt.Errorf("scenario: %q must be one of %s or all", name, strings.Join(knownScenarios, ", "))
		}
		out = append(out, name)
	}
	return out, nil
}

// bench runs the scenarios against Saga (and the ceiling) and prints a table.
func bench(ctx context.Context, cfg config, stdout io.Writer) error {
	// big keeps its readers and four more clients busy at once.
	tlsConfig, err := cfg.tlsConfig()
	if err != nil {
		return err
	}
	target, err := newTarget(cfg.addr, max(cfg.clients, cfg.readers+4), cfg.token, tlsConfig)
	if err != nil {
		return err
	}
	if _, err := target.api.Health(ctx); err != nil {
		return fmt.Errorf("check the server: %w", err)
	}
	fmt.Fprintf(stdout, "saga-bench: %s, %d CPUs, GOMAXPROCS %d, %d clients, %s per scenario and server (after %s warm-up)\n",
		target.api.Addr(), runtime.NumCPU(), runtime.GOMAXPROCS(0), cfg.clients, cfg.duration, cfg.warmup)
	if cfg.ceiling {
		fmt.Fprintf(stdout, "saga-bench: Saga and the ceiling alternate in %d rounds\n", cfg.rounds)
	}

	report := newReport(stdout)
	runID := fmt.Sprintf("%x", time.Now().UnixNano())
	for _, name := range cfg.scenarios {
		if ctx.Err() != nil {
			break
		}
		if err := runScenario(ctx, name, target, cfg, runID, report); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	report.flush()
	return ctx.Err()
}

// runScenario measures one scenario against Saga and, when asked, against
// a ceiling server answering the bytes that Saga answered. With a ceiling
// the measured time is split into rounds that alternate between the two,
// so that other work on the machine weighs on both alike.
func runScenario(ctx context.Context, name string, saga *target, cfg config, runID string, report *report) error {
	sc, err := setupScenario(ctx, name, saga, cfg, runID)
	if err != nil {
		return err
	}
	defer sc.cleanup()
	for _, n := range sc.takeNotes() {
		report.note(name, n)
	}

	var ceiling *ceilingServer
	rounds := 1
	if cfg.ceiling && sc.answer != nil {
		if ceiling, err = startCeiling(ctx, *sc.answer, cfg.clients); err != nil {
			return err
		}
		defer ceiling.stop()
		rounds = cfg.rounds
	}
	round := cfg
	round.duration = cfg.duration / time.Duration(rounds)
	var sagaRows, ceilingRows [][]measured
	for r := range rounds {
		if r > 0 {
			round.warmup = 0
		}
		rows, err := sc.measure(ctx, saga, round)
		if err != nil {
			return err
		}
		sagaRows = append(sagaRows, rows)
		if ceiling == nil {
			continue
		}
		if rows, err = sc.measure(ctx, ceiling.target, round); err != nil {
			return fmt.Errorf("against the ceiling: %w", err)
		}
		ceilingRows = append(ceilingRows, rows)
	}
	for _, m := range combineRounds(sagaRows) {
		report.add(name+m.label, "saga", m.res)
	}
	for _, m := range combineRounds(ceilingRows) {
		report.add(name+m.label, "ceiling", m.res)
	}
	for _, n := range sc.takeNotes() {
		report.note(name, n)
	}
	return nil
}

// combineRounds merges the rows of several rounds, row by row.
func combineRounds(rounds [][]measured) []measured {
	if len(rounds) == 0 {
		return nil
	}
	out := make([]measured, len(rounds[0]))
	for i := range out {
		parts := make([]result, 0, len(rounds))
		var elapsed time.Duration
		for _, rows := range rounds {
			parts = append(parts, rows[i].res)
			elapsed += rows[i].res.elapsed
		}
		out[i] = measured{label: rounds[0][i].label, res: merge(parts, elapsed, rounds[0][i].res.unit)}
	}
	return out
}
