// Package golden gives tests typed access to the reference data made by the
// original Python implementation (testdata/golden, copied from the shared golden set)
// and the tolerance rule every parity test uses.
package golden
