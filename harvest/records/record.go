package records

import (
	"errors"
	"math"
)

// ErrBadRecord marks bytes that are not a NeuronRecord.
var ErrBadRecord = errors.New("not a neuron record")

// NeuronID names a unit: its layer (0 for once points) and its index.
type NeuronID struct {
	Layer int
	Index int
}

// ActivationRecord is one example window: its token strings and the unit's
// value at each token.
type ActivationRecord struct {
	Tokens      []string
	Activations []float32
}

// Max is the largest activation of the record (-Inf when it is empty).
func (r ActivationRecord) Max() float32 {
	m := float32(math.Inf(-1))
	for _, v := range r.Activations {
		if v > m {
			m = v
		}
	}
	return m
}

// NeuronRecord is TDB's record of one unit. QuantileBoundaries and
// RandomSampleByQuantile are nil when no quantiles were asked for; Skewness
// and Kurtosis are NaN when the variance is 0 (both written as null).
type NeuronRecord struct {
	ID                     NeuronID
	RandomSample           []ActivationRecord
	RandomSampleByQuantile [][]ActivationRecord
	QuantileBoundaries     []float64
	Mean                   float64
	Variance               float64
	Skewness               float64
	Kurtosis               float64
	MostPositive           []ActivationRecord
}
