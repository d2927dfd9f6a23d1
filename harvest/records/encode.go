package records

import (
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Marshal writes r as TDB's fast_dataclasses does: compact JSON, fields in
// the dataclasses' order with "dataclass_name" first, NaN as null, floats as
// Python's repr of the float64 value (a float32 activation is written as the
// exact float64 it widens to, as .tolist() gives it).
func Marshal(r *NeuronRecord) []byte {
	n := 256
	for _, a := range r.MostPositive {
		n += 24 * len(a.Activations)
	}
	for _, a := range r.RandomSample {
		n += 24 * len(a.Activations)
	}
	b := make([]byte, 0, n)
	b = append(b, `{"dataclass_name":"NeuronRecord","neuron_id":{"dataclass_name":"NeuronId","neuron_index":`...)
	b = strconv.AppendInt(b, int64(r.ID.Index), 10)
	b = append(b, `,"layer_index":`...)
	b = strconv.AppendInt(b, int64(r.ID.Layer), 10)
	b = append(b, `},"random_sample":`...)
	b = appendRecords(b, r.RandomSample)
	b = append(b, `,"random_sample_by_quantile":`...)
	if r.RandomSampleByQuantile == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, q := range r.RandomSampleByQuantile {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendRecords(b, q)
		}
		b = append(b, ']')
	}
	b = append(b, `,"quantile_boundaries":`...)
	if r.QuantileBoundaries == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, v := range r.QuantileBoundaries {
			if i > 0 {
				b = append(b, ',')
			}
			b = AppendFloat(b, v)
		}
		b = append(b, ']')
	}
	for _, f := range []struct {
		k string
		v float64
	}{{"mean", r.Mean}, {"variance", r.Variance}, {"skewness", r.Skewness}, {"kurtosis", r.Kurtosis}} {
		b = append(b, `,"`...)
		b = append(b, f.k...)
		b = append(b, `":`...)
		b = AppendFloat(b, f.v)
	}
	b = append(b, `,"most_positive_activation_records":`...)
	b = appendRecords(b, r.MostPositive)
	return append(b, '}')
}

func appendRecords(b []byte, rs []ActivationRecord) []byte {
	b = append(b, '[')
	for i, r := range rs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"dataclass_name":"ActivationRecord","activations":[`...)
		for j, v := range r.Activations {
			if j > 0 {
				b = append(b, ',')
			}
			b = AppendFloat(b, float64(v))
		}
		b = append(b, `],"tokens":[`...)
		for j, s := range r.Tokens {
			if j > 0 {
				b = append(b, ',')
			}
			b = AppendString(b, s)
		}
		b = append(b, "]}"...)
	}
	return append(b, ']')
}

// AppendFloat appends v as Python's repr writes a float (shortest digits,
// "1.0", "1e-05", "1e+16"); NaN and infinities become null, as orjson
// writes them.
func AppendFloat(b []byte, v float64) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(b, "null"...)
	}
	if v == 0 {
		if math.Signbit(v) {
			return append(b, "-0.0"...)
		}
		return append(b, "0.0"...)
	}
	// Shortest digits and the decimal exponent, from the 'e' form.
	s := strconv.FormatFloat(v, 'e', -1, 64) // "-d.ddde±XX"
	neg := s[0] == '-'
	if neg {
		s = s[1:]
	}
	mant, expStr, _ := strings.Cut(s, "e")
	exp, _ := strconv.Atoi(expStr)
	digits := strings.Replace(mant, ".", "", 1)
	if neg {
		b = append(b, '-')
	}
	if exp < -4 || exp >= 16 {
		b = append(b, digits[0])
		if len(digits) > 1 {
			b = append(b, '.')
			b = append(b, digits[1:]...)
		}
		b = append(b, 'e')
		if exp < 0 {
			b = append(b, '-')
			exp = -exp
		} else {
			b = append(b, '+')
		}
		if exp < 10 {
			b = append(b, '0')
		}
		return strconv.AppendInt(b, int64(exp), 10)
	}
	if exp < 0 {
		b = append(b, "0."...)
		for i := 0; i < -exp-1; i++ {
			b = append(b, '0')
		}
		return append(b, digits...)
	}
	if len(digits) <= exp+1 {
		b = append(b, digits...)
		for i := len(digits); i < exp+1; i++ {
			b = append(b, '0')
		}
		return append(b, ".0"...)
	}
	b = append(b, digits[:exp+1]...)
	b = append(b, '.')
	return append(b, digits[exp+1:]...)
}

// AppendString appends s as a JSON string the way orjson does: UTF-8 kept
// as is, only '"', '\\' and control characters escaped. Invalid UTF-8 (which
// token strings never hold) becomes U+FFFD.
func AppendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x80 {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				b = append(b, "\ufffd"...)
			} else {
				b = append(b, s[i:i+n]...)
			}
			i += n
			continue
		}
		switch {
		case c == '"':
			b = append(b, `\"`...)
		case c == '\\':
			b = append(b, `\\`...)
		case c == '\n':
			b = append(b, `\n`...)
		case c == '\r':
			b = append(b, `\r`...)
		case c == '\t':
			b = append(b, `\t`...)
		case c == '\b':
			b = append(b, `\b`...)
		case c == '\f':
			b = append(b, `\f`...)
		case c < 0x20:
			b = append(b, `\u00`...)
			b = append(b, hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
		i++
	}
	return append(b, '"')
}
