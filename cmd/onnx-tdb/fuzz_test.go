package main

import (
	"flag"
	"testing"

	"github.com/urfave/cli/v2"
)

// The CLI's own specs are read from untrusted strings (scripts pass them
// on): each parser must return an error or a value that makes sense, never
// panic.

func FuzzParseTokenRows(f *testing.F) {
	for _, s := range []string{"15496,11,616;818,7795", "1", "", ";", "1,,2", " 3 ; 4 ", "-1", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rows, err := parseTokenRows(s)
		if err != nil {
			return
		}
		for _, r := range rows {
			if len(r) == 0 {
				t.Fatalf("%q: an empty row was accepted", s)
			}
		}
	})
}

func FuzzParseLayers(f *testing.F) {
	for _, s := range []string{"", "all", "0,1,2", "1,,", "x", "-3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { parseLayers(s) })
}

func FuzzParseShapes(f *testing.F) {
	for _, s := range []string{"1x16,1x128", "4x", "x4", "0x1", "2x2x2", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		shapes, err := parseShapes(s)
		if err != nil {
			return
		}
		for _, sh := range shapes {
			if sh.B <= 0 || sh.T <= 0 {
				t.Fatalf("%q: shape %+v accepted", s, sh)
			}
		}
	})
}

func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"0,last,42", "all,3, the", "1,-1,5+6", ",,", "0", "a,b,c", "0,0,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.String("target", s, "")
		c := cli.NewContext(nil, fs, nil)
		tg, err := parseTarget(c, nil, true)
		if err != nil {
			return
		}
		if tg.row < -1 || tg.pos < -1 || len(tg.tokens) == 0 {
			t.Fatalf("%q: accepted as %+v", s, tg)
		}
	})
}
