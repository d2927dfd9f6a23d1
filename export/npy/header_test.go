package npy

import (
	"strconv"
	"strings"
	"testing"
)

// show prints a parsed value back in Python syntax, for comparing in tests.
func show(v pyValue) string {
	switch v.kind {
	case pyStr:
		return "'" + v.str + "'"
	case pyInt:
		return strconv.FormatInt(v.num, 10)
	case pyBool:
		if v.truth {
			return "True"
		}
		return "False"
	case pyNone:
		return "None"
	case pyTuple, pyList:
		parts := make([]string, len(v.items))
		for i, it := range v.items {
			parts[i] = show(it)
		}
		if v.kind == pyList {
			return "[" + strings.Join(parts, ", ") + "]"
		}
		if len(parts) == 1 {
			return "(" + parts[0] + ",)"
		}
		return "(" + strings.Join(parts, ", ") + ")"
	default:
		parts := make([]string, len(v.keys))
		for i, k := range v.keys {
			parts[i] = "'" + k + "': " + show(v.vals[i])
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
}

func TestParseLiteralFollowsPythonSyntax(t *testing.T) {
	for in, want := range map[string]string{
		"()":                       "()",
		"( )":                      "()",
		"(3,)":                     "(3,)",
		"(3)":                      "3",
		"((3))":                    "3",
		"((3),)":                   "(3,)",
		"(1, 2, 3,)":               "(1, 2, 3)",
		"(1,2,3)":                  "(1, 2, 3)",
		"[]":                       "[]",
		"[1, (2,), [3]]":           "[1, (2,), [3]]",
		"{}":                       "{}",
		"{'a': 1,}":                "{'a': 1}",
		"{'a': 1, 'a': 2}":         "{'a': 2}",
		"{'a': 1, 'b': 2, 'a': 3}": "{'a': 3, 'b': 2}",
		`"it's"`:                   "'it's'",
		`'a\'b'`:                   "'a'b'",
		`'\\'`:                     `'\'`,
		`'\q'`:                     `'\q'`,
		`'\x41\101\t'`:             "'AA\t'",
		"u'x'":                     "'x'",
		"-3":                       "-3",
		"- -3":                     "3",
		"+4":                       "4",
		"0":                        "0",
		"007":                      "7",
		"9223372036854775807":      "9223372036854775807",
		"True":                     "True",
		"False":                    "False",
		"None":                     "None",
		"  \t\n (1,\n 2)\n   ":     "(1, 2)",
		"(1,\\\n 2)":               "(1, 2)",
	} {
		v, err := parseLiteral([]byte(in), false)
		if err != nil {
			t.Errorf("parseLiteral(%q): %v", in, err)
			continue
		}
		if got := show(v); got != want {
			t.Errorf("parseLiteral(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestParseLiteralRejects(t *testing.T) {
	for _, in := range []string{
		"", " ", "(", ")", "(,)", "(1,,)", "(1 2)", "[1,,]", "{'a'}", "{'a':}", "{'a': 1 'b': 2}",
		"{1: 2}", "{(1,): 2}", "'abc", "'a\nb'", "'''a'''", "1.5", "1e3", "1j", "1_000", "0x10", "3L",
		"true", "none", "-", "- x", "abc", "b'x'", "1 2", "(1)(2)", "{'a': 1}}", "\x00",
		"9223372036854775808", strings.Repeat("[", 40) + strings.Repeat("]", 40), `'\x4'`, `'\xzz'`,
	} {
		if v, err := parseLiteral([]byte(in), false); err == nil {
			t.Errorf("parseLiteral(%q) = %s, want an error", in, show(v))
		}
	}
	if v, err := parseLiteral([]byte("(2L, 3l)"), true); err != nil || show(v) != "(2, 3)" {
		t.Errorf("with Python 2 longs: %s, %v", show(v), err)
	}
}
