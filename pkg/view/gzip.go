package view

import (
	"bytes"
	"compress/gzip"
	"sync"
)

// Answer is an encoded answer of the view (LookupAnswer, CatalogAnswer):
// its JSON and its index. Readers of the same cached answer share it, its
// gzip form too. Callers must not modify the bytes.
type Answer struct {
	Body  []byte
	Index uint64

	entry *cacheEntry // nil for an answer the view does not keep
	view  *View       // nil for an Answer built by hand
}

// answerOf is the answer of a cache entry, counted as one more reader of
// it. Callers hold the view's lock.
func (v *View) answerOf(e *cacheEntry) Answer {
	e.take()
	return v.answerTaken(e)
}

// answerTaken is the answer of an entry already counted for its reader.
func (v *View) answerTaken(e *cacheEntry) Answer {
	return Answer{Body: e.body, Index: e.index, entry: e, view: v}
}

// Release tells the view that the caller is done with the answer's bytes,
// its gzip form included, so that a big answer's buffer can be used
// again once no reader holds it (reuse.go). Call it once, after the last
// use; an answer never released is left to the garbage collector.
func (a Answer) Release() {
	if a.entry != nil {
		a.entry.release()
	}
}

// GzipLevel is the compression level of gzipped answers: gzip.BestSpeed.
// Measured on the answer of a lookup of 200,000 instances (one core of a
// shared two-core machine, BenchmarkGzipBigAnswer): the full form, 64 MB,
// takes 0.30 s to 4.0 % of its size at BestSpeed, 0.30 s to 3.5 % at
// level 3, 0.91 s to 3.2 % at the default level, and HuffmanOnly 0.84 s
// for 60 %; the lean id,address,port,tags form, 15 MB, takes 0.15 s to
// 12 % at BestSpeed, 0.19 s at level 3 and 0.56 s to 10.6 % at the
// default. A big answer is encoded again whenever its service changes and
// then compressed again, so the time counts more than the last per cent:
// the default level would triple the CPU for a body smaller by a fifth.
const GzipLevel = gzip.BestSpeed

// Gzip returns Body compressed with gzip. A cached answer is compressed
// once, on the first call: concurrent callers wait for that one, and the
// compressed bytes count against the view's cache budget for as long as
// the answer stays cached. An answer the view does not keep is compressed
// on each call.
func (a Answer) Gzip() []byte {
	e := a.entry
	if e == nil || a.view == nil {
		return gzipBody(nil, a.Body)
	}
	e.gzOnce.Do(func() {
		v := a.view
		if e.big {
			// Compressing a big answer takes a core for a good part of a
			// second, and memory: as many at a time as are encoded.
			v.bigEncodes <- struct{}{}
			defer func() { <-v.bigEncodes }()
		}
		e.gz = gzipBody(&v.gzipWriters, e.body)
		v.mu.Lock()
		defer v.mu.Unlock()
		if svc := e.owner; svc != nil {
			n := int64(len(e.gz))
			e.size += n
			v.cacheBytes += n
			v.makeRoomLocked(svc)
		}
	})
	return e.gz
}

// gzipBody compresses body at GzipLevel, with a writer from pool when
// there is one.
func gzipBody(pool *sync.Pool, body []byte) []byte {
	var zw *gzip.Writer
	out := bytes.NewBuffer(make([]byte, 0, len(body)/8+64))
	if pool != nil {
		zw, _ = pool.Get().(*gzip.Writer)
	}
	if zw == nil {
		zw, _ = gzip.NewWriterLevel(out, GzipLevel) // a valid level: no error
	} else {
		zw.Reset(out)
	}
	// Writes to a bytes.Buffer do not fail.
	_, _ = zw.Write(body)
	_ = zw.Close()
	if pool != nil {
		pool.Put(zw)
	}
	return out.Bytes()
}
