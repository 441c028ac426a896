package registry

import "testing"

func TestFeedDropsWhenFullAndOwesAResync(t *testing.T) {
	f := NewFeed(2)
	f.Emit(Event{Type: EventRegistered, Index: 1})
	f.Emit(Event{Type: EventRegistered, Index: 2})
	f.Emit(Event{Type: EventRegistered, Index: 3}) // full: dropped, a resync owed
	if got := (<-f.C()).Index; got != 1 {
		t.Fatalf("first event %d", got)
	}
	f.Flush() // room for the resync now
	if got := (<-f.C()).Index; got != 2 {
		t.Fatalf("second event %d", got)
	}
	if got := <-f.C(); got.Type != EventResync {
		t.Fatalf("got %s, want the owed resync", got.Type)
	}
	f.Emit(Event{Type: EventRegistered, Index: 4})
	if got := (<-f.C()).Index; got != 4 {
		t.Fatalf("after the resync: %d", got)
	}
	f.Close()
	f.Emit(Event{Type: EventRegistered, Index: 5}) // closed: dropped, no panic
	f.Resync()
	if _, open := <-f.C(); open {
		t.Fatal("feed still open after Close")
	}
}

func TestFeedResyncWaitsForRoom(t *testing.T) {
	f := NewFeed(1)
	f.Emit(Event{Type: EventRegistered, Index: 1})
	f.Resync() // no room: owed
	f.Emit(Event{Type: EventRegistered, Index: 2})
	if got := (<-f.C()).Index; got != 1 {
		t.Fatalf("first %d", got)
	}
	f.Emit(Event{Type: EventRegistered, Index: 3}) // sends the owed resync first; 3 is dropped
	if got := <-f.C(); got.Type != EventResync {
		t.Fatalf("got %s, want the resync", got.Type)
	}
}
