package main

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestPrintableEscapesWhatATerminalWouldObey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"web-1", "web-1"},
		{"a b", "a b"},
		{"ünïcödé ✓ 日本", "ünïcödé ✓ 日本"},
		{`C:\dir "q"`, `C:\dir "q"`},
		{"\ufffd", "\ufffd"},
		{"\x1b[2J", `\x1b[2J`},
		{"a\nb", `a\nb`},
		{"a\r\tb", `a\r\tb`},
		{"\x00\x07\x7f", `\x00\a\x7f`},
		{"\u009b31m", `\u009b31m`},
		{"\u202eevil", `\u202eevil`},
		{"zero\u200bwidth", `zero\u200bwidth`},
		{"a\xffb", `a\xffb`},
		{"\xc3", `\xc3`},
		{"\xed\xa0\x80", `\xed\xa0\x80`},
		{"ok\xe2\x82", `ok\xe2\x82`},
	}
	for _, tt := range tests {
		if got := printable(tt.in); got != tt.want {
			t.Errorf("printable(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzPrintableEscapes(f *testing.F) {
	for _, s := range []string{"web", "\x1b]0;x\x07", "a\nb", "\xff", "\u202e", "日本"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := printable(s)
		if !utf8.ValidString(out) {
			t.Fatalf("printable(%q) = %q: not UTF-8", s, out)
		}
		if strings.ContainsFunc(out, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }) {
			t.Fatalf("printable(%q) = %q: a control or format character is left", s, out)
		}
		if utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return r == utf8.RuneError || !unicode.IsPrint(r) && r != ' ' }) && out != s {
			t.Fatalf("printable(%q) = %q: ordinary text changed", s, out)
		}
	})
}
