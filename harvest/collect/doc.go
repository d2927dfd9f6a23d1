// Package collect holds the bounded per-unit state of a harvest and its
// deterministic merge: for every unit of a site, the top-k examples by
// max-over-tokens, the examples with the smallest splitmix64 keys (the
// random sample, and per quantile bucket in a second pass), exact moment
// sums, and (for quantiles) each example's maximum, or, for jobs too large
// to keep them, a mergeable sketch of the maxima (sketch.go).
//
// On the harvest data path it sits between the model and the records: a
// worker feeds a shard's activations into a Partial, encodes it for the
// coordinator, which decodes and merges every shard's Partial and turns the
// result into NeuronRecords. Every rule is a total order on (value, example)
// or (key, example) and the sums are exact, so the result does not depend
// on how the examples were split into shards or in which order shards merge.
package collect
