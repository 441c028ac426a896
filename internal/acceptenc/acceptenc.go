// Package acceptenc reads a request's Accept-Encoding, for the routes that
// can answer gzipped: the API's lookups and catalogue, and the console's
// assets.
package acceptenc

import (
	"strconv"
	"strings"
)

// Gzip reports whether Accept-Encoding headers allow gzip (RFC 9110
// §12.5.3): gzip or x-gzip named with a weight above zero, or else * with
// one. A coding named explicitly wins over *, so "*;q=0, gzip" allows it
// and "gzip;q=0, *" does not. No header means no compression, as most
// clients that send none expect.
func Gzip(headers []string) bool {
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
