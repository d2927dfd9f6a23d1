// Package harvest runs a model over a corpus and writes, for every unit of
// the chosen hook points (or SAE latents), TDB's collated activation
// records: the most activating examples, a random sample, optional
// per-quantile samples, and moments, as NeuronRecord JSON files in TDB's
// layout <out>/<point>/collated-activations/<layer>/<unit>.json.
//
// The data path: corpus files → windows (harvest/corpus) → shards of
// examples queued on NATS JetStream (harvest/queue) → workers run the model
// and fold each shard into a partial state (harvest/collect) stored under
// the shard's id → the coordinator merges the partials and writes the
// records (harvest/records), all at once. By default Run starts an embedded
// NATS server and one in-process worker; with Options.NATS it submits to an
// existing server and workers anywhere run Work. LoadRecord reads records
// back, ours or TDB's public ones, from a folder or a blob location.
package harvest
