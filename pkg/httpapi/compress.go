package httpapi

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/sagaproject/saga/pkg/view"
)

// gzipMin is the smallest answer that is sent gzipped: below it, gzip's
// own header and the work on both ends outweigh the bytes it saves.
const gzipMin = 1 << 10

// writeAnswer answers 200 with a read's JSON, gzipped when the client
// accepts gzip and the body is at least gzipMin long. The view compresses
// a cached answer once, for every reader (view.Answer.Gzip). The routes
// that call it send Vary: Accept-Encoding on every answer.
func writeAnswer(w http.ResponseWriter, r *http.Request, answer view.Answer) {
	body := answer.Body
	if len(body) >= gzipMin && acceptsGzip(r.Header.Values("Accept-Encoding")) {
		body = answer.Gzip()
		w.Header().Set("Content-Encoding", "gzip")
	}
	writeBody(w, http.StatusOK, body)
}

// acceptsGzip reports whether Accept-Encoding headers allow gzip (RFC 9110
// §12.5.3): gzip or x-gzip named with a weight above zero, or else * with
// one. No header means no compression, as most clients that send none
// expect.
func acceptsGzip(headers []string) bool {
	gzipQ, anyQ := -1.0, -1.0
	for _, header := range headers {
		for part := range strings.SplitSeq(header, ",") {
			coding, params, _ := strings.Cut(part, ";")
			coding = strings.ToLower(strings.TrimSpace(coding))
			if coding != "gzip" && coding != "x-gzip" && coding != "*" {
				continue
			}
			q := weight(params)
			if coding == "*" {
				anyQ = max(anyQ, q)
			} else {
				gzipQ = max(gzipQ, q)
			}
		}
	}
	if gzipQ >= 0 {
		return gzipQ > 0
	}
	return anyQ > 0
}

// weight reads the q= of a coding's parameters: 1 without one, 0 for one
// that is not a number from 0 to 1.
func weight(params string) float64 {
	for param := range strings.SplitSeq(params, ";") {
		name, value, ok := strings.Cut(param, "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "q") {
			continue
		}
		q, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil || !(q >= 0 && q <= 1) {
			return 0
		}
		return q
	}
	return 1
}
