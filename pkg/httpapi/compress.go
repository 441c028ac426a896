package httpapi

import (
	"net/http"

	"github.com/sagaproject/saga/internal/acceptenc"
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
	if len(body) >= gzipMin && acceptenc.Gzip(r.Header.Values("Accept-Encoding")) {
		body = answer.Gzip()
		w.Header().Set("Content-Encoding", "gzip")
	}
	writeBody(w, http.StatusOK, body)
}
