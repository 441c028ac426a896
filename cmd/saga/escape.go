package main

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// printable makes a string from the server safe to print on a terminal:
// control characters, other characters that do not print (zero-width and
// bidirectional marks among them) and bytes that are not UTF-8 are shown as
// Go escapes (\x1b, \n, \u202e, \xff), so a tag or an error message can
// neither drive the terminal nor fake a line of output. Ordinary text is
// returned as it is, without quotes; backslashes are not doubled.
func printable(s string) string {
	if isPrintable(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case strconv.IsPrint(r):
			b.WriteString(s[i : i+size])
		default:
			q := strconv.QuoteRune(r) // '\x1b', '\n', '\u202e'
			b.WriteString(q[1 : len(q)-1])
		}
		i += size
	}
	return b.String()
}

func isPrintable(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || !strconv.IsPrint(r) {
			return false // RuneError: a byte that is not UTF-8, or U+FFFD itself
		}
	}
	return true
}

// printableError is an error whose text may carry what the server said
// (the message of an API error), folded onto one line and made printable.
// errors.Is and errors.As see through it.
type printableError struct{ err error }

func (e printableError) Error() string { return printable(oneLine(e.err.Error())) }
func (e printableError) Unwrap() error { return e.err }
