package main

import (
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// countingReader serves size bytes, as much as each read asks for, and
// counts the reads.
type countingReader struct {
	left  int
	reads int
}

func (r *countingReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	r.reads++
	n := min(len(p), r.left)
	r.left -= n
	return n, nil
}

func TestDrainReadsBigAnswersInBigReads(t *testing.T) {
	const size = 64 << 20 // a 200,000-instance answer
	r := &countingReader{left: size}
	if err := drain(r); err != nil {
		t.Fatalf("drain: %v", err)
	}
	if r.left != 0 {
		t.Fatalf("drain left %d bytes unread", r.left)
	}
	if want := size / drainChunk; r.reads > want {
		t.Errorf("drain read a %d MB answer in %d reads, want at most %d", size>>20, r.reads, want)
	}
}

func TestDrainReportsAFailedRead(t *testing.T) {
	broken := errors.New("connection reset")
	err := drain(io.MultiReader(&countingReader{left: 3 << 20}, iotest.ErrReader(broken)))
	if !errors.Is(err, broken) {
		t.Fatalf("drain = %v, want %v", err, broken)
	}
}
