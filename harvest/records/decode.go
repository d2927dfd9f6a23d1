package records

import (
	"encoding/json"
	"fmt"
	"math"
)

type wireID struct {
	LayerIndex  *int `json:"layer_index"`
	NeuronIndex *int `json:"neuron_index"`
	Layer       *int `json:"layer"` // TDB's legacy name of layer_index
	Idx         *int `json:"idx"`   // TDB's legacy name of neuron_index
}

type wireActivation struct {
	Tokens      []string   `json:"tokens"`
	Activations []*float64 `json:"activations"`
}

type wireRecord struct {
	NeuronID               *wireID            `json:"neuron_id"`
	RandomSample           []wireActivation   `json:"random_sample"`
	RandomSampleByQuantile [][]wireActivation `json:"random_sample_by_quantile"`
	QuantileBoundaries     []*float64         `json:"quantile_boundaries"`
	Mean                   *float64           `json:"mean"`
	Variance               *float64           `json:"variance"`
	Skewness               *float64           `json:"skewness"`
	Kurtosis               *float64           `json:"kurtosis"`
	MostPositive           []wireActivation   `json:"most_positive_activation_records"`
}

// Unmarshal reads a NeuronRecord in TDB's JSON encoding: ours, TDB's own
// and TDB's public datasets (neuron_id may use the legacy keys layer and
// idx). "dataclass_name" and unknown keys are ignored; null numbers read as
// NaN. The error wraps ErrBadRecord.
func Unmarshal(data []byte) (*NeuronRecord, error) {
	var w wireRecord
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	if w.NeuronID == nil {
		return nil, fmt.Errorf("%w: no neuron_id", ErrBadRecord)
	}
	id, err := w.NeuronID.id()
	if err != nil {
		return nil, err
	}
	r := &NeuronRecord{
		ID:       id,
		Mean:     orNaN(w.Mean),
		Variance: orNaN(w.Variance),
		Skewness: orNaN(w.Skewness),
		Kurtosis: orNaN(w.Kurtosis),
	}
	if r.RandomSample, err = convert(w.RandomSample, "random_sample"); err != nil {
		return nil, err
	}
	if r.MostPositive, err = convert(w.MostPositive, "most_positive_activation_records"); err != nil {
		return nil, err
	}
	if w.RandomSampleByQuantile != nil {
		r.RandomSampleByQuantile = make([][]ActivationRecord, len(w.RandomSampleByQuantile))
		for i, q := range w.RandomSampleByQuantile {
			if r.RandomSampleByQuantile[i], err = convert(q, fmt.Sprintf("random_sample_by_quantile[%d]", i)); err != nil {
				return nil, err
			}
		}
	}
	if w.QuantileBoundaries != nil {
		r.QuantileBoundaries = make([]float64, len(w.QuantileBoundaries))
		for i, v := range w.QuantileBoundaries {
			r.QuantileBoundaries[i] = orNaN(v)
		}
	}
	return r, nil
}

func (w *wireID) id() (NeuronID, error) {
	layer, index := w.LayerIndex, w.NeuronIndex
	if layer == nil {
		layer = w.Layer
	}
	if index == nil {
		index = w.Idx
	}
	if layer == nil || index == nil {
		return NeuronID{}, fmt.Errorf("%w: neuron_id lacks layer_index or neuron_index", ErrBadRecord)
	}
	if *layer < 0 || *index < 0 {
		return NeuronID{}, fmt.Errorf("%w: negative neuron_id (layer %d, index %d)", ErrBadRecord, *layer, *index)
	}
	return NeuronID{Layer: *layer, Index: *index}, nil
}

func convert(ws []wireActivation, field string) ([]ActivationRecord, error) {
	if ws == nil {
		return nil, nil
	}
	out := make([]ActivationRecord, len(ws))
	for i, w := range ws {
		if len(w.Tokens) != len(w.Activations) {
			return nil, fmt.Errorf("%w: %s[%d] has %d tokens and %d activations", ErrBadRecord, field, i, len(w.Tokens), len(w.Activations))
		}
		acts := make([]float32, len(w.Activations))
		for j, v := range w.Activations {
			acts[j] = float32(orNaN(v))
		}
		out[i] = ActivationRecord{Tokens: w.Tokens, Activations: acts}
	}
	return out, nil
}

func orNaN(v *float64) float64 {
	if v == nil {
		return math.NaN()
	}
	return *v
}
