package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/sagaproject/saga/pkg/client"
	"github.com/sagaproject/saga/pkg/registry"
)

// A service registers itself and stays registered until it is stopped.
func ExampleClient_KeepAlive() {
	c, err := client.New("127.0.0.1:8030")
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err = c.KeepAlive(ctx, "web", registry.Registration{Address: "10.0.0.5", Port: 8080, TTLSeconds: 30},
		client.KeepAliveOptions{
			OnRegister: func(r client.Registered) { log.Printf("registered as %s", r.Instance.ID) },
			OnError:    func(err error) { log.Printf("keeping alive: %v", err) },
		})
	if err != nil {
		log.Fatal(err)
	}
}

// A consumer follows a service's instances with blocking queries. It
// dials them, so it asks for the fields it uses only: a lean answer, a
// fraction of the full one to send and decode.
func ExampleClient_Lookup() {
	c, err := client.New("127.0.0.1:8030")
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	opts := client.LookupOptions{Tags: []string{"v2"}, Fields: []string{"id", "address", "port"}}
	for {
		res, err := c.Lookup(ctx, "web", opts)
		if err != nil {
			log.Fatal(err)
		}
		if res.Index != opts.Index {
			fmt.Printf("web has %d instances (index %d)\n", len(res.Instances), res.Index)
		}
		opts.Index, opts.Wait = res.Index, 5*time.Minute
	}
}

// API errors carry the status, the code and the field at fault.
func ExampleError() {
	c, err := client.New("127.0.0.1:8030")
	if err != nil {
		log.Fatal(err)
	}
	_, err = c.Register(context.Background(), "web", registry.Registration{Address: "10.0.0.5", Port: 70000})
	var apiErr *client.Error
	switch {
	case errors.As(err, &apiErr) && apiErr.Field != "":
		fmt.Printf("bad %s: %s\n", apiErr.Field, apiErr.Message)
	case errors.Is(err, registry.ErrUnavailable):
		fmt.Println("saga cannot reach its store; try again")
	case err != nil:
		fmt.Println(err)
	}
}
