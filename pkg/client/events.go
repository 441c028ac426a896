package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strings"

	"github.com/sagaproject/saga/pkg/registry"
)

// EventStream reads the server's Server-Sent Events. It is not safe for
// concurrent use; Close it when done.
type EventStream struct {
	ctx    context.Context
	body   io.ReadCloser
	reader *bufio.Reader
	addr   string
}

// Events opens the event stream of the given services, or of every service
// when none is given. It returns once the server has accepted the stream,
// so a server that cannot be reached is reported here.
//
// A stream does not reconnect by itself. The server drops a reader that
// falls far behind, and a restart ends every stream: open a new one, then
// Lookup the services to catch up with what happened in between.
func (c *Client) Events(ctx context.Context, services ...string) (*EventStream, error) {
	q := url.Values{}
	for _, s := range services {
		q.Add("service", s)
	}
	req, err := c.newRequest(ctx, http.MethodGet, "/api/v1/events", q, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.transportError(ctx, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return nil, decodeError(resp.StatusCode, resp.Header, body)
	}
	return &EventStream{ctx: ctx, body: resp.Body, reader: bufio.NewReader(resp.Body), addr: c.Addr()}, nil
}

// Next blocks until the next event arrives. It returns io.EOF when the
// server ended the stream, and the context's error once it is done.
func (s *EventStream) Next() (registry.Event, error) {
	var eventType string
	var data strings.Builder
	for {
		line, err := s.reader.ReadString('\n')
		if err != nil {
			return registry.Event{}, s.readError(err)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" { // a blank line ends an event
			if data.Len() == 0 {
				eventType = ""
				continue
			}
			return decodeEvent(eventType, data.String())
		}
		if strings.HasPrefix(line, ":") { // a comment keeps the stream open
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			eventType = value
		case "data":
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(value)
		}
	}
}

// All yields events until the stream ends or fails; a clean end (io.EOF)
// is not yielded as an error.
func (s *EventStream) All() iter.Seq2[registry.Event, error] {
	return func(yield func(registry.Event, error) bool) {
		for {
			ev, err := s.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if !yield(ev, err) || err != nil {
				return
			}
		}
	}
}

// Close ends the stream.
func (s *EventStream) Close() error { return s.body.Close() }

func (s *EventStream) readError(err error) error {
	if ctxErr := s.ctx.Err(); ctxErr != nil {
		return ctxErr // the caller ended the stream
	}
	if errors.Is(err, io.EOF) {
		return io.EOF
	}
	return &UnreachableError{Addr: s.addr, Err: err}
}

func decodeEvent(eventType, data string) (registry.Event, error) {
	var ev registry.Event
	if err := json.Unmarshal([]byte(data), &ev); err != nil {
		return registry.Event{}, fmt.Errorf("decode %q event: %w", eventType, err)
	}
	if ev.Type == "" {
		ev.Type = registry.EventType(eventType)
	}
	return ev, nil
}
