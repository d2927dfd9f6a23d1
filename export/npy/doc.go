// Package npy reads and writes NumPy .npy files of float32 data, the format
// of activation dumps (`<dot path>.L<layer>.npy`, `logits.npy`; DESIGN.md,
// "Canonical names on disk and in the CLI").
//
// Write produces what numpy.save writes for a C-order float32 array, byte
// for byte: format 1.0, descr '<f4', the header padded with spaces (including
// NumPy's 21-digit room to grow the first axis) and a newline so that data
// starts at a multiple of 64 bytes.
//
// Read accepts format versions 1.0, 2.0 and 3.0 in C order. The header is
// parsed as the Python literal it is, so key order, spacing, quotes and
// trailing commas may vary. Data types are converted to float32:
//
//	'<f4' '>f4'             exact
//	'<f8' '>f8'             rounded to nearest float32 (overflow gives ±Inf)
//	'<i8' '>i8' '<i4' '>i4' rounded to nearest float32 (exact up to 2^24)
//	'|i1' '|u1'             exact
//	'|b1'                   0 or 1 (any non-zero byte is 1)
//
// Other types, structured types and fortran_order True give ErrUnsupported.
// A shape of () is a scalar: Read returns an empty, non-nil shape and one
// value.
package npy
