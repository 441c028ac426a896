package osservice

import (
	"context"
	"fmt"
	"os"
	"runtime"

	"github.com/kardianos/service"
)

// RunManaged runs serve until ctx ends. The Windows service manager expects
// a service to answer it within 30 seconds and sends its stop request over
// that channel, not as a signal, so there serve runs through
// kardianos/service. systemd, launchd and a terminal need nothing of the
// kind: serve is called directly.
func RunManaged(ctx context.Context, name string, serve func(context.Context) error) error {
	if runtime.GOOS != "windows" || service.Interactive() {
		return serve(ctx)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p := &managedProgram{serve: serve, ctx: ctx, cancel: cancel, done: make(chan error, 1)}
	svc, err := service.New(p, &service.Config{Name: name})
	if err != nil {
		return fmt.Errorf("service manager: %w", err)
	}
	if err := svc.Run(); err != nil {
		return fmt.Errorf("run as service %s: %w", name, err)
	}
	return <-p.done
}

// managedProgram adapts serve to kardianos' Start/Stop.
type managedProgram struct {
	serve  func(context.Context) error
	ctx    context.Context
	cancel context.CancelFunc
	done   chan error
}

func (p *managedProgram) Start(service.Service) error {
	go func() {
		err := p.serve(p.ctx)
		if p.ctx.Err() == nil {
			// serve gave up on its own (a port in use, a bad store): the
			// service manager only learns of it when the process exits,
			// and then restarts it (OnFailure=restart).
			fmt.Fprintln(os.Stderr, "saga:", err)
			os.Exit(1)
		}
		p.done <- err
	}()
	return nil
}

func (p *managedProgram) Stop(service.Service) error {
	p.cancel()
	err := <-p.done
	p.done <- err // for RunManaged
	return nil
}
