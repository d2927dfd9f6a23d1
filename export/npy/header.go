package npy

import (
	"fmt"
	"math"
)

// The .npy header is a Python dict literal, read by NumPy with
// ast.literal_eval. This is a small parser for the subset a header can hold:
// dicts, tuples, lists, strings, ints, True, False and None, with Python's
// rules for whitespace, trailing commas and parenthesised (non-tuple)
// expressions. Errors are plain: the caller wraps them in ErrCorrupt.

type pyKind int

const (
	pyStr pyKind = iota
	pyInt
	pyBool
	pyNone
	pyTuple
	pyList
	pyDict
)

var kindNames = [...]string{"str", "int", "bool", "None", "tuple", "list", "dict"}

func (k pyKind) String() string { return kindNames[k] }

type pyValue struct {
	kind  pyKind
	str   string    // pyStr
	num   int64     // pyInt
	truth bool      // pyBool
	items []pyValue // pyTuple, pyList
	keys  []string  // pyDict, in order, without repeats (a repeated key keeps its last value)
	vals  []pyValue // pyDict
}

// maxDepth bounds nesting, so a header of a million '(' cannot exhaust the stack.
const maxDepth = 32

type parser struct {
	s       []byte
	pos     int
	depth   int
	longInt bool // accept Python 2's "3L" (NumPy does for format 1.0 and 2.0)
}

// parseLiteral parses s as one Python literal surrounded by optional whitespace.
func parseLiteral(s []byte, longInt bool) (pyValue, error) {
	p := &parser{s: s, longInt: longInt}
	v, err := p.value()
	if err != nil {
		return pyValue{}, err
	}
	p.space()
	if p.pos != len(p.s) {
		return pyValue{}, p.errorf("unexpected %q after the value", p.s[p.pos])
	}
	return v, nil
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("header offset %d: %s", p.pos, fmt.Sprintf(format, args...))
}

func (p *parser) space() {
	for p.pos < len(p.s) {
		switch p.s[p.pos] {
		case ' ', '\t', '\n', '\r', '\f', '\v':
			p.pos++
		case '\\': // an explicit line joining backslash
			if p.pos+1 < len(p.s) && p.s[p.pos+1] == '\n' {
				p.pos += 2
				continue
			}
			return
		default:
			return
		}
	}
}

// peek skips whitespace and returns the next byte, or 0 at the end.
func (p *parser) peek() byte {
	p.space()
	if p.pos >= len(p.s) {
		return 0
	}
	return p.s[p.pos]
}

func (p *parser) value() (pyValue, error) {
	c := p.peek()
	switch {
	case c == 0:
		return pyValue{}, p.errorf("unexpected end of header")
	case c == '{' || c == '(' || c == '[':
		p.depth++
		defer func() { p.depth-- }()
		if p.depth > maxDepth {
			return pyValue{}, p.errorf("nesting deeper than %d", maxDepth)
		}
		p.pos++
		switch c {
		case '{':
			return p.dict()
		case '(':
			return p.paren()
		default:
			items, _, err := p.sequence(']')
			return pyValue{kind: pyList, items: items}, err
		}
	case c == '\'' || c == '"':
		return p.str()
	case (c == 'u' || c == 'U') && p.pos+1 < len(p.s) && (p.s[p.pos+1] == '\'' || p.s[p.pos+1] == '"'):
		p.pos++
		return p.str()
	case c == '-' || c == '+' || (c >= '0' && c <= '9'):
		return p.integer()
	case isNameStart(c):
		return p.name()
	}
	return pyValue{}, p.errorf("unexpected %q", c)
}

// sequence reads items up to close; the opening bracket is consumed.
// comma reports whether any comma was seen (it makes "(x,)" a tuple).
func (p *parser) sequence(close byte) (items []pyValue, comma bool, err error) {
	for {
		if p.peek() == close {
			p.pos++
			return items, comma, nil
		}
		v, err := p.value()
		if err != nil {
			return nil, false, err
		}
		items = append(items, v)
		switch p.peek() {
		case ',':
			p.pos++
			comma = true
		case close:
		default:
			return nil, false, p.errorf("expected ',' or %q", close)
		}
	}
}

// paren reads "()" (an empty tuple), "(x)" (just x) or "(x, ...)" (a tuple).
func (p *parser) paren() (pyValue, error) {
	items, comma, err := p.sequence(')')
	if err != nil {
		return pyValue{}, err
	}
	if len(items) == 1 && !comma {
		return items[0], nil
	}
	return pyValue{kind: pyTuple, items: items}, nil
}

func (p *parser) dict() (pyValue, error) {
	d := pyValue{kind: pyDict}
	index := map[string]int{}
	for {
		if p.peek() == '}' {
			p.pos++
			return d, nil
		}
		k, err := p.value()
		if err != nil {
			return pyValue{}, err
		}
		if k.kind != pyStr {
			return pyValue{}, p.errorf("dict key is a %s, not a str", k.kind)
		}
		if p.peek() != ':' {
			return pyValue{}, p.errorf("expected ':' after key %q", k.str)
		}
		p.pos++
		v, err := p.value()
		if err != nil {
			return pyValue{}, err
		}
		if i, ok := index[k.str]; ok {
			d.vals[i] = v
		} else {
			index[k.str] = len(d.keys)
			d.keys = append(d.keys, k.str)
			d.vals = append(d.vals, v)
		}
		switch p.peek() {
		case ',':
			p.pos++
		case '}':
		default:
			return pyValue{}, p.errorf("expected ',' or '}'")
		}
	}
}

func (p *parser) str() (pyValue, error) {
	quote := p.s[p.pos]
	p.pos++
	if p.pos+1 < len(p.s) && p.s[p.pos] == quote && p.s[p.pos+1] == quote {
		return pyValue{}, p.errorf("triple-quoted strings are not supported")
	}
	var out []byte
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		p.pos++
		switch {
		case c == quote:
			return pyValue{kind: pyStr, str: string(out)}, nil
		case c == '\n' || c == '\r':
			return pyValue{}, p.errorf("end of line inside a string")
		case c == '\\' && p.pos < len(p.s):
			e := p.s[p.pos]
			p.pos++
			switch e {
			case '\\', '\'', '"':
				out = append(out, e)
			case 'n':
				out = append(out, '\n')
			case 't':
				out = append(out, '\t')
			case 'r':
				out = append(out, '\r')
			case 'x':
				if p.pos+2 > len(p.s) || unhex(p.s[p.pos]) < 0 || unhex(p.s[p.pos+1]) < 0 {
					return pyValue{}, p.errorf("bad \\x escape")
				}
				out = append(out, byte(unhex(p.s[p.pos])<<4|unhex(p.s[p.pos+1])))
				p.pos += 2
			case '0', '1', '2', '3', '4', '5', '6', '7': // up to three octal digits
				n := int(e - '0')
				for i := 0; i < 2 && p.pos < len(p.s) && p.s[p.pos] >= '0' && p.s[p.pos] <= '7'; i++ {
					n = n*8 + int(p.s[p.pos]-'0')
					p.pos++
				}
				out = append(out, byte(n)) // ASCII and latin-1 values; above 0o377 never names a dtype
			case '\n': // line continuation inside the string
			default: // Python keeps unknown escapes as written
				out = append(out, '\\', e)
			}
		default:
			out = append(out, c)
		}
	}
	return pyValue{}, p.errorf("unterminated string")
}

func (p *parser) integer() (pyValue, error) {
	neg := false
	for p.pos < len(p.s) && (p.s[p.pos] == '-' || p.s[p.pos] == '+') { // Python allows "- -3"
		neg = neg != (p.s[p.pos] == '-')
		p.pos++
		p.space()
	}
	start := p.pos
	var n uint64
	for p.pos < len(p.s) && p.s[p.pos] >= '0' && p.s[p.pos] <= '9' {
		d := uint64(p.s[p.pos] - '0')
		if n > (math.MaxInt64-d)/10 {
			return pyValue{}, p.errorf("integer too large")
		}
		n = n*10 + d
		p.pos++
	}
	if p.pos == start {
		return pyValue{}, p.errorf("expected a number")
	}
	if p.pos < len(p.s) {
		switch c := p.s[p.pos]; {
		case p.longInt && (c == 'L' || c == 'l'):
			p.pos++
		case c == '.' || c == 'e' || c == 'E' || c == 'j' || c == 'J' || c == '_' || isNameStart(c):
			return pyValue{}, p.errorf("unsupported number literal")
		}
	}
	v := int64(n)
	if neg {
		v = -v
	}
	return pyValue{kind: pyInt, num: v}, nil
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c|0x20 >= 'a' && c|0x20 <= 'f':
		return int(c|0x20-'a') + 10
	}
	return -1
}

func isNameStart(c byte) bool { return c == '_' || (c|0x20 >= 'a' && c|0x20 <= 'z') }

func (p *parser) name() (pyValue, error) {
	start := p.pos
	for p.pos < len(p.s) && (isNameStart(p.s[p.pos]) || (p.s[p.pos] >= '0' && p.s[p.pos] <= '9')) {
		p.pos++
	}
	switch w := string(p.s[start:p.pos]); w {
	case "True", "False":
		return pyValue{kind: pyBool, truth: w == "True"}, nil
	case "None":
		return pyValue{kind: pyNone}, nil
	default:
		p.pos = start
		return pyValue{}, p.errorf("unexpected name %q", w)
	}
}
