// Package goldenmodel exports the golden TDB checkpoint (testdata/golden/model)
// once per test binary, for the tests of packages that run it.
package goldenmodel
