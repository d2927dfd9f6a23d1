// Package harvesttest compares a harvest's output with the reference
// records of the shared golden set (its harvest folder), by that folder's
// rules: the same examples in the same order except near ties,
// activations, boundaries and moments within the unit's tolerance, and
// exactly the expected files. Tests of the harvest CLI and Go API use it; it
// sits beside the data path, checking what the harvest writes.
package harvesttest
