package view

import (
	"bytes"
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/sagaproject/saga/pkg/registry"
)

// join registers one more instance of a service at index, a change that
// makes every cached answer of it stale.
func join(v *View, service string, index uint64) {
	in := inst(service, fmt.Sprintf("join-%06d", index), time.Minute, registry.StatusPassing, nil, nil)
	v.Apply(registered(in, index))
}

// allocated returns how many bytes the heap allocated while f ran.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// Once its readers released it and the cache let go of it, a big answer's
// buffer holds the next big answer: encoding a big service again after a
// change allocates a small part of the answer's size, not the answer.
func TestBigAnswerBufferIsUsedAgainOnceReleased(t *testing.T) {
	v, _ := newView(t)
	bigService(v, "big", 4*bigAnswer)
	first := v.LookupAnswer("big", Query{})
	size := len(first.Body)
	first.Release()

	join(v, "big", 2) // the next answer replaces first in the cache: first is free
	second := v.LookupAnswer("big", Query{})
	second.Release()

	join(v, "big", 3)
	var third Answer
	took := allocated(func() { third = v.LookupAnswer("big", Query{}) })
	defer third.Release()
	if &third.Body[0] != &first.Body[0] {
		t.Error("the third answer is not in the first one's buffer")
	}
	if took > uint64(size)/2 {
		t.Errorf("encoding again allocated %d bytes for an answer of %d", took, size)
	}
	if got := answerIDs(t, third); len(got) != 4*bigAnswer+2 {
		t.Fatalf("third answer has %d instances, want %d", len(got), 4*bigAnswer+2)
	}
}

// An answer a reader still holds is never written over, however many
// changes and other readers come and go; nor is one still in the cache.
func TestHeldBigAnswerIsNeverWrittenOver(t *testing.T) {
	v, _ := newView(t)
	bigService(v, "big", 2*bigAnswer)
	held := v.LookupAnswer("big", Query{})
	kept := bytes.Clone(held.Body)

	// Readers of the cached answer release it: it stays cached, and so
	// must stay whole.
	for range 3 {
		v.LookupAnswer("big", Query{}).Release()
	}
	cached := v.LookupAnswer("big", Query{})
	if &cached.Body[0] != &held.Body[0] {
		t.Fatal("the cached answer was not served")
	}
	cached.Release()

	for i := range uint64(5) {
		join(v, "big", 2+i)
		a := v.LookupAnswer("big", Query{})
		if &a.Body[0] == &held.Body[0] {
			t.Fatalf("change %d: a new answer was written in a buffer a reader holds", i)
		}
		a.Release()
	}
	if !bytes.Equal(held.Body, kept) {
		t.Fatal("a held answer changed under its reader")
	}
	held.Release()
}

// Readers that join an encoding under way, readers of the cache and
// changes all at once: every answer a reader holds stays whole until it
// releases it. Under the race detector, a buffer written while a reader
// reads it is reported too.
func TestConcurrentReadersKeepWholeBigAnswers(t *testing.T) {
	v, _ := newView(t)
	bigService(v, "big", 2*bigAnswer)
	stop := make(chan struct{})
	var writer sync.WaitGroup
	writer.Go(func() {
		for i := uint64(2); ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			join(v, "big", i)
		}
	})
	var readers sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		readers.Go(func() {
			for range 12 {
				a := v.LookupAnswer("big", Query{})
				kept := bytes.Clone(a.Body)
				var body lookupBody
				if err := json.Unmarshal(a.Body, &body); err != nil {
					errs <- fmt.Errorf("decode: %w", err)
					return
				}
				if body.Index != a.Index || len(body.Instances) < 2*bigAnswer {
					errs <- fmt.Errorf("answer at %d says index %d with %d instances", a.Index, body.Index, len(body.Instances))
					return
				}
				runtime.Gosched()
				if !bytes.Equal(a.Body, kept) {
					errs <- fmt.Errorf("an answer at %d changed while held", a.Index)
					return
				}
				a.Release()
			}
		})
	}
	readers.Wait()
	close(stop)
	writer.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s := v.Stats(); s.Misses < 5 {
		t.Fatalf("%d encodings: the answers were not made again while read", s.Misses)
	}
}

// Spare buffers are let go of once unused for spareFor, and never more
// than maxSpares are kept.
func TestSpareBuffersAreBoundedAndLetGo(t *testing.T) {
	clock := registry.NewManualClock(start)
	s := spareBuffers{clock: clock}
	for _, n := range []int{10, 30, 20} {
		s.put(make([]byte, 0, n))
	}
	if len(s.list) != maxSpares {
		t.Fatalf("%d spares kept, want %d", len(s.list), maxSpares)
	}
	if got := s.get(25); cap(got) != 30 {
		t.Fatalf("get(25) gave a buffer of %d, want the spare of 30", cap(got))
	}
	if got := s.get(50); cap(got) < 50 || len(got) != 0 {
		t.Fatalf("get(50) gave len %d cap %d", len(got), cap(got))
	}
	clock.Advance(spareFor)
	s.trim()
	if len(s.list) != 0 {
		t.Fatalf("%d spares kept after %v unused", len(s.list), spareFor)
	}
}
