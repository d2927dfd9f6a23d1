// Package records holds TDB's NeuronRecord (the collated activations of one
// neuron or SAE latent over a corpus) and its JSON encoding, byte for byte as
// TDB's fast_dataclasses writes it and as TDB's loader reads it back.
//
// On the harvest data path it is the last step: the merged per-unit state
// becomes one NeuronRecord per unit, written as
// <point>/collated-activations/<layer>/<unit>.json; records show and
// harvest.LoadRecord decode the same files, ours and TDB's public ones
// (including the legacy neuron_id keys layer/idx).
package records
