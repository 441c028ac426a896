package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sagaproject/saga/pkg/client"
	"github.com/sagaproject/saga/pkg/registry"
)

// requestTimeout bounds the one-shot client commands, so a server that
// accepts connections but never answers does not hang a script.
const requestTimeout = 30 * time.Second

// clientFlags are the flags that every client command shares.
type clientFlags struct {
	server string
	output string
	quiet  bool // the command prints nothing (saga health --quiet)
	conn   connFlags
}

func (f *clientFlags) add(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.server, "server", "", "address of the Saga server, URL or host:port (default $SAGA_ADDR, else the local server as configured by server.host and server.port, "+client.DefaultAddr+" by default)")
	cmd.PersistentFlags().StringVarP(&f.output, "output", "o", "table", "output format: table or json")
	f.conn.add(cmd.PersistentFlags())
}

// clientCmd is what a client command works with once its flags are read.
type clientCmd struct {
	client *client.Client
	json   bool
	out    io.Writer // what the command prints
	errOut io.Writer // progress notes of the long-running commands
}

// connect checks the shared flags and builds the client for the server
// that serverAddr picks. A note about that choice goes to notes, unless
// the command is quiet.
func (f *clientFlags) connect(a *app, notes io.Writer) (*clientCmd, error) {
	switch f.output {
	case "table", "json":
	default:
		return nil, fmt.Errorf("output: %q must be table or json", f.output)
	}
	addr, serverCert, note := a.serverAddr(f.server)
	if note != nil && !f.quiet {
		fmt.Fprintf(notes, "saga: %s\n", printableError{note}) // the file may hold anything
	}
	opts, err := f.conn.options(a.getenv, addr, serverCert)
	if err != nil {
		return nil, err
	}
	c, err := client.New(addr, opts...)
	if err != nil {
		return nil, err
	}
	return &clientCmd{client: c, json: f.output == "json", out: a.stdout, errOut: a.stderr}, nil
}

// newClientCmds returns the commands that talk to a running server.
func newClientCmds(a *app) []*cobra.Command {
	return []*cobra.Command{
		newRegisterCmd(a),
		newDeregisterCmd(a),
		newHeartbeatCmd(a),
		newServicesCmd(a),
		newLookupCmd(a),
		newWatchCmd(a),
		newHealthCmd(a),
		newTokenCmd(a),
	}
}

// withClient wraps a command body: it builds the client and prefixes any
// error with the command's name ("register: port: …"). The error's text is
// made printable, since it may quote the server.
func withClient(a *app, flags *clientFlags, body func(ctx context.Context, c *clientCmd, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := flags.connect(a, a.stderr)
		if err == nil {
			err = flags.conn.explainDenial(body(cmd.Context(), c, args))
		}
		if err == nil || errors.Is(err, context.Canceled) {
			return nil
		}
		// A subcommand is named with its parent: "token create: …".
		name := strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ")
		var exit *exitError
		if errors.As(err, &exit) {
			if exit.err != nil {
				exit.err = printableError{fmt.Errorf("%s: %w", name, exit.err)}
			}
			return exit
		}
		return printableError{fmt.Errorf("%s: %w", name, err)}
	}
}

// untilSignal ends ctx on SIGINT or SIGTERM, for the commands that run
// until interrupted: they finish cleanly instead of dying mid-write.
func untilSignal(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

// completionTimeout bounds the request behind a shell completion: a
// completion that hangs is worse than none.
const completionTimeout = time.Second

// completeServices completes a command's first argument with the names of
// the services the server knows.
func completeServices(a *app, flags *clientFlags) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 && cmd.Name() != "watch" {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, err := flags.connect(a, io.Discard) // a shell is reading
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
		defer cancel()
		catalog, err := c.client.Services(ctx, client.QueryOptions{})
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		names := make([]cobra.Completion, 0, len(catalog.Services))
		for _, s := range catalog.Services {
			if registry.ValidateName("service", s.Name) == nil { // the shell reads these lines
				names = append(names, s.Name)
			}
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

func newRegisterCmd(a *app) *cobra.Command {
	var (
		flags     clientFlags
		reg       registry.Registration
		meta      []string
		ttl       string
		keepAlive bool
		check     checkFlags
	)
	cmd := &cobra.Command{
		Use:   "register SERVICE --address ADDRESS --port PORT",
		Short: "Register an instance of a service",
		Long: "Register an instance of SERVICE, or replace the instance with the same --id.\n" +
			"With --keepalive, saga keeps sending heartbeats until interrupted\n" +
			"(SIGINT or SIGTERM), then deregisters the instance.",
		Example: "  saga register web --address 10.0.0.5 --port 8080 --tag v2 --meta zone=eu-1 --ttl 30s\n" +
			"  saga register web --id web-1 --address 10.0.0.5 --port 8080 --keepalive\n" +
			"  saga register web --address 10.0.0.5 --port 8080 --check-http /healthz --check-interval 10s\n" +
			"  saga register db --address 10.0.0.6 --port 5432 --check-tcp :5432",
		Args: cobra.ExactArgs(1),
	}
	cmd.RunE = withClient(a, &flags, func(ctx context.Context, c *clientCmd, args []string) error {
		service := args[0]
		var err error
		if reg.Metadata, err = parsePairs("meta", meta); err != nil {
			return err
		}
		if reg.TTLSeconds, err = parseSeconds("ttl", ttl); err != nil {
			return err
		}
		if reg.Checks, err = check.checks(); err != nil {
			return err
		}
		if keepAlive {
			return c.keepAlive(ctx, service, reg)
		}
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		registered, err := c.client.Register(ctx, service, reg)
		if err != nil {
			return err
		}
		return c.printRegistered(registered)
	})
	cmd.ValidArgsFunction = completeServices(a, &flags)
	flags.add(cmd)
	f := cmd.Flags()
	f.StringVar(&reg.ID, "id", "", "instance id (default: generated by the server)")
	f.StringVar(&reg.Address, "address", "", "IP address or host name of the instance (required)")
	f.IntVar(&reg.Port, "port", 0, "port of the instance, 1-65535 (required)")
	f.StringArrayVar(&reg.Tags, "tag", nil, "tag the instance (repeatable)")
	f.StringArrayVar(&meta, "meta", nil, "metadata as key=value (repeatable)")
	f.StringVar(&ttl, "ttl", "", "time to live, e.g. 30s or 2m (default: the server's)")
	f.BoolVar(&keepAlive, "keepalive", false, "send heartbeats until interrupted, then deregister")
	check.add(f)
	_ = cmd.MarkFlagRequired("address")
	_ = cmd.MarkFlagRequired("port")
	return cmd
}

// keepAlive registers and heartbeats until interrupted, then deregisters.
func (c *clientCmd) keepAlive(ctx context.Context, service string, reg registry.Registration) error {
	ctx, stop := untilSignal(ctx)
	defer stop()
	first := true
	err := c.client.KeepAlive(ctx, service, reg, client.KeepAliveOptions{
		OnRegister: func(r client.Registered) {
			if first {
				first = false
				_ = c.printRegistered(r)
				fmt.Fprintf(c.errOut, "saga: keeping %s/%s alive, a heartbeat every %s; interrupt to deregister\n",
					printable(service), printable(r.Instance.ID), r.HeartbeatInterval)
				return
			}
			fmt.Fprintf(c.errOut, "saga: the server had forgotten %s/%s; registered it again\n", printable(service), printable(r.Instance.ID))
		},
		OnError: func(err error) {
			fmt.Fprintf(c.errOut, "saga: register: %s; retrying\n", printableError{err})
		},
	})
	if err != nil {
		return err
	}
	if !first {
		fmt.Fprintf(c.errOut, "saga: deregistered %s/%s\n", printable(service), printable(reg.ID))
	}
	return nil
}

// registeredJSON is the -o json form of a registration: the instance and
// the server's advice, as the API sends them.
type registeredJSON struct {
	registry.Instance
	HeartbeatIntervalSeconds float64 `json:"heartbeat_interval_seconds"`
	Created                  bool    `json:"created"`
}

func (c *clientCmd) printRegistered(r client.Registered) error {
	if c.json {
		return writeJSON(c.out, registeredJSON{
			Instance:                 r.Instance,
			HeartbeatIntervalSeconds: r.HeartbeatInterval.Seconds(),
			Created:                  r.Created,
		})
	}
	return writeInstances(c.out, []registry.Instance{r.Instance})
}

func newDeregisterCmd(a *app) *cobra.Command {
	var flags clientFlags
	cmd := &cobra.Command{
		Use:     "deregister SERVICE ID",
		Short:   "Remove an instance of a service",
		Example: "  saga deregister web web-1",
		Args:    cobra.ExactArgs(2),
	}
	cmd.RunE = withClient(a, &flags, func(ctx context.Context, c *clientCmd, args []string) error {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		if err := c.client.Deregister(ctx, args[0], args[1]); err != nil {
			return err
		}
		if c.json {
			return writeJSON(c.out, map[string]any{"service": args[0], "id": args[1], "deregistered": true})
		}
		_, err := fmt.Fprintf(c.out, "deregistered %s/%s\n", printable(args[0]), printable(args[1]))
		return err
	})
	cmd.ValidArgsFunction = completeServices(a, &flags)
	flags.add(cmd)
	return cmd
}

func newHeartbeatCmd(a *app) *cobra.Command {
	var (
		flags  clientFlags
		status string
	)
	cmd := &cobra.Command{
		Use:     "heartbeat SERVICE ID",
		Short:   "Renew an instance's TTL, optionally setting its status",
		Example: "  saga heartbeat web web-1\n  saga heartbeat web web-1 --status warning",
		Args:    cobra.ExactArgs(2),
	}
	cmd.RunE = withClient(a, &flags, func(ctx context.Context, c *clientCmd, args []string) error {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		renewal, err := c.client.Heartbeat(ctx, args[0], args[1], registry.Status(status))
		if err != nil {
			return err
		}
		if c.json {
			return writeJSON(c.out, struct {
				Service string `json:"service"`
				ID      string `json:"id"`
				client.Renewal
			}{args[0], args[1], renewal})
		}
		return writeTable(c.out, []string{"SERVICE", "ID", "TTL", "EXPIRES"},
			[][]string{{args[0], args[1], (time.Duration(renewal.TTLSeconds) * time.Second).String(), formatTime(renewal.ExpiresAt)}})
	})
	cmd.ValidArgsFunction = completeServices(a, &flags)
	flags.add(cmd)
	cmd.Flags().StringVar(&status, "status", "", "set the status: passing, warning or critical")
	return cmd
}

func newServicesCmd(a *app) *cobra.Command {
	var flags clientFlags
	cmd := &cobra.Command{
		Use:     "services",
		Short:   "List the registered services",
		Example: "  saga services\n  saga services -o json",
		Args:    cobra.NoArgs,
	}
	cmd.RunE = withClient(a, &flags, func(ctx context.Context, c *clientCmd, _ []string) error {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		catalog, err := c.client.Services(ctx, client.QueryOptions{})
		if err != nil {
			return err
		}
		if c.json {
			return writeJSON(c.out, catalog)
		}
		rows := make([][]string, 0, len(catalog.Services))
		for _, s := range catalog.Services {
			rows = append(rows, []string{s.Name, strconv.Itoa(s.Instances), strconv.Itoa(s.Passing)})
		}
		return writeTable(c.out, []string{"NAME", "INSTANCES", "PASSING"}, rows)
	})
	flags.add(cmd)
	return cmd
}

func newLookupCmd(a *app) *cobra.Command {
	var (
		flags clientFlags
		opts  client.LookupOptions
		meta  []string
		watch bool
		wait  string
	)
	cmd := &cobra.Command{
		Use:   "lookup SERVICE",
		Short: "List the live instances of a service",
		Long: "List the live instances of SERVICE: passing and warning ones by default.\n" +
			"With --watch, saga waits for the service to change (blocking queries) and\n" +
			"prints each new answer until interrupted.",
		Example: "  saga lookup web\n  saga lookup web --tag v2 --meta zone=eu-1 --status passing\n  saga lookup web --watch -o json",
		Args:    cobra.ExactArgs(1),
	}
	cmd.RunE = withClient(a, &flags, func(ctx context.Context, c *clientCmd, args []string) error {
		var err error
		if opts.Meta, err = parsePairs("meta", meta); err != nil {
			return err
		}
		if !c.json {
			opts.Fields = tableFields()
		}
		if watch {
			if opts.Wait, err = parseDuration("wait", wait); err != nil {
				return err
			}
			return c.watchLookup(ctx, args[0], opts)
		}
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		result, err := c.client.Lookup(ctx, args[0], opts)
		if err != nil {
			return err
		}
		if c.json {
			return writeJSON(c.out, result)
		}
		return writeInstances(c.out, result.Instances)
	})
	cmd.ValidArgsFunction = completeServices(a, &flags)
	flags.add(cmd)
	f := cmd.Flags()
	f.StringArrayVar(&opts.Tags, "tag", nil, "only instances with this tag (repeatable; all must match)")
	f.StringArrayVar(&meta, "meta", nil, "only instances with this metadata, key=value (repeatable)")
	f.StringVar(&opts.Status, "status", "", "passing for passing instances only, any to include critical ones")
	f.BoolVar(&watch, "watch", false, "print the answer again each time the service changes, until interrupted")
	f.StringVar(&wait, "wait", "5m", "with --watch, how long one blocking query waits at most")
	return cmd
}

// watchLookup prints the service's instances, then waits for each change
// with a blocking query and prints the new answer. In JSON, every answer
// is one line.
func (c *clientCmd) watchLookup(ctx context.Context, service string, opts client.LookupOptions) error {
	ctx, stop := untilSignal(ctx)
	defer stop()
	wait := opts.Wait
	opts.Wait = 0
	first := true
	for {
		result, err := c.client.Lookup(ctx, service, opts)
		if err != nil {
			return err
		}
		// An unchanged index means the wait ran out: nothing to print.
		if first || result.Index != opts.Index {
			if err := c.printWatched(result, first); err != nil {
				return err
			}
		}
		first = false
		opts.Index, opts.Wait = result.Index, wait
	}
}

func (c *clientCmd) printWatched(result client.ServiceInstances, first bool) error {
	if c.json {
		return writeJSONLine(c.out, result)
	}
	if !first {
		fmt.Fprintln(c.out)
	}
	fmt.Fprintf(c.out, "# %s, index %d, %s\n", printable(result.Service), result.Index, formatTime(time.Now()))
	return writeInstances(c.out, result.Instances)
}

func newWatchCmd(a *app) *cobra.Command {
	var flags clientFlags
	cmd := &cobra.Command{
		Use:   "watch [SERVICE...]",
		Short: "Print registry events as they happen",
		Long: "Follow the server's event stream and print one line per event\n" +
			"(registered, updated, deregistered, expired) until interrupted;\n" +
			"only the given services' events when services are named.",
		Example: "  saga watch\n  saga watch web api -o json",
	}
	cmd.RunE = withClient(a, &flags, func(ctx context.Context, c *clientCmd, args []string) error {
		ctx, stop := untilSignal(ctx)
		defer stop()
		which := "every service"
		if len(args) > 0 {
			which = strings.Join(args, ", ")
		}
		// Said once the stream is open, so that nothing after it is missed.
		// Follow reconnects when a restart or an upgrade ends the stream.
		var once sync.Once
		return c.client.FollowOpened(ctx, args, func() {
			once.Do(func() {
				fmt.Fprintf(c.errOut, "saga: following the events of %s; interrupt to stop\n", printable(which))
			})
		}, c.printEvent)
	})
	cmd.ValidArgsFunction = completeServices(a, &flags)
	flags.add(cmd)
	return cmd
}

// printEvent prints one event on one line:
// "registered web/web-1 10.0.0.5:8080 passing index=7".
func (c *clientCmd) printEvent(ev registry.Event) error {
	if c.json {
		return writeJSONLine(c.out, ev)
	}
	in := ev.Instance
	_, err := fmt.Fprintf(c.out, "%s %s/%s %s %s index=%d\n",
		printable(string(ev.Type)), printable(ev.Service), printable(in.ID), printable(hostPort(in)), printable(string(in.Status)), ev.Index)
	return err
}

func newHealthCmd(a *app) *cobra.Command {
	var flags clientFlags
	cmd := &cobra.Command{
		Use:   "health [SERVICE]",
		Short: "Check the server's health, or a service's",
		Long: "Print the server's health report and exit 0 when it is healthy, 1 otherwise\n" +
			"(also when it cannot be reached). With SERVICE, print the service's\n" +
			"instance counts and exit 0 when at least one instance passes.\n" +
			"--quiet prints nothing: for probes and a container's HEALTHCHECK.",
		Example: "  saga health\n  saga health --quiet\n  saga health web -o json",
		Args:    cobra.MaximumNArgs(1),
	}
	cmd.RunE = withClient(a, &flags, func(ctx context.Context, c *clientCmd, args []string) error {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		if flags.quiet {
			c.out = io.Discard
		}
		healthy, err := c.health(ctx, args)
		switch {
		case err != nil && flags.quiet:
			return &exitError{code: 1}
		case err != nil:
			return &exitError{code: 1, err: err}
		case !healthy:
			return &exitError{code: 1}
		}
		return nil
	})
	cmd.ValidArgsFunction = completeServices(a, &flags)
	flags.add(cmd)
	cmd.Flags().BoolVarP(&flags.quiet, "quiet", "q", false, "print nothing; only the exit status tells")
	return cmd
}

// health prints the report asked for and says whether it is healthy.
func (c *clientCmd) health(ctx context.Context, args []string) (bool, error) {
	if len(args) == 1 {
		h, err := c.client.ServiceHealth(ctx, args[0])
		if err != nil {
			return false, err
		}
		if c.json {
			return h.Healthy, writeJSON(c.out, h)
		}
		return h.Healthy, writeTable(c.out, []string{"SERVICE", "HEALTHY", "INSTANCES", "PASSING", "WARNING", "CRITICAL"},
			[][]string{{h.Service, strconv.FormatBool(h.Healthy), strconv.Itoa(h.Instances), strconv.Itoa(h.Passing), strconv.Itoa(h.Warning), strconv.Itoa(h.Critical)}})
	}
	report, err := c.client.Health(ctx)
	if err != nil {
		return false, err
	}
	if c.json {
		return report.Healthy(), writeJSON(c.out, report)
	}
	rows := [][]string{
		{"status", report.Status},
		{"version", report.Version},
		{"storage", report.Storage},
	}
	if report.Redis != "" {
		rows = append(rows, []string{"redis", report.Redis})
	}
	rows = append(rows,
		[]string{"services", strconv.Itoa(report.Cache.Size)},
		[]string{"instances", strconv.Itoa(report.Cache.Instances)},
		[]string{"cache hits", strconv.FormatUint(report.Cache.Hits, 10)},
		[]string{"cache misses", strconv.FormatUint(report.Cache.Misses, 10)},
		[]string{"cache hit ratio", strconv.FormatFloat(report.Cache.HitRatio, 'f', 4, 64)},
		[]string{"uptime", (time.Duration(report.UptimeSeconds) * time.Second).String()},
	)
	return report.Healthy(), writeTable(c.out, nil, rows)
}

// parsePairs reads repeated key=value flags (key:value is accepted too,
// as in the API's meta filter).
func parsePairs(field string, pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			k, v, ok = strings.Cut(p, ":")
		}
		if !ok || k == "" {
			return nil, fmt.Errorf("%s: %q must be key=value", field, p)
		}
		out[k] = v
	}
	return out, nil
}

// parseDuration reads "30s", "2m" or a bare number of seconds ("60").
func parseDuration(field, s string) (time.Duration, error) {
	d, err := registry.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a duration like 30s, 2m or 60 (seconds), and not negative", field, s)
	}
	return d, nil
}

// parseSeconds reads a TTL in whole seconds; empty means the server's default.
func parseSeconds(field, s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	d, err := parseDuration(field, s)
	if err != nil {
		return 0, err
	}
	if d%time.Second != 0 || d < time.Second {
		return 0, fmt.Errorf("%s: %q must be a whole number of seconds, at least 1s", field, s)
	}
	return int(d / time.Second), nil
}
