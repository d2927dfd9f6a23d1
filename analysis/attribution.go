package analysis

import (
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

// Attribution is direct logit attribution: each component's contribution
// to a logit (or logit difference) at every position.
type Attribution struct {
	// Labels are the decomposition's, plus "ln_f.bias" where the final
	// norm has a bias.
	Labels []string
	Values *hooks.Tensor // [C,B,T]
	// Actual is the model's own logit (difference) at each position, [B,T];
	// the contributions add up to it up to round-off.
	Actual *hooks.Tensor
}

// At returns the contributions at batch row b and position t, in label
// order.
func (a *Attribution) At(b, t int) []float64 {
	B, T := a.Values.Shape[1], a.Values.Shape[2]
	out := make([]float64, len(a.Labels))
	for k := range out {
		out[k] = float64(a.Values.Data[(k*B+b)*T+t])
	}
	return out
}

// LogitAttrs attributes the metric (Logit: logit[target]; LogitDiff:
// logit[target] - logit[distractor]) to the decomposition's components.
// Each component c contributes ((c - mean(c)) / s) . (g * u): the final
// norm applied with the final residual stream's own scale s, frozen (the
// standard convention), its gain g, and u the unembedding direction of the
// metric. RMSNorm models (no resid.ln_f.post_mean_subtraction point) take
// no mean; a final-norm bias b adds the component b . u.
func (c *Cache) LogitAttrs(d *Decomposition, metric Metric) (*Attribution, error) {
	if metric.Kind == Prob {
		return nil, fmt.Errorf("%w: direct logit attribution is linear in the logits: use logit or logit-diff", ErrMetric)
	}
	if err := metric.check(c.Logits.Shape[2]); err != nil {
		return nil, err
	}
	scale, err := c.Get(hooks.Site{Point: hooks.LnFScale, Layer: -1}) // [B,T,1]
	if err != nil {
		return nil, err
	}
	u, err := c.m.direction(metric)
	if err != nil {
		return nil, err
	}
	gain, err := c.m.weight(modelctx.WeightLayerNormGainFinal, modelctx.NoLayer)
	if err != nil {
		return nil, err
	}
	bias, err := c.m.optionalWeight(modelctx.WeightLayerNormBiasFinal, modelctx.NoLayer)
	if err != nil {
		return nil, err
	}
	D := len(u)
	w := make([]float64, D)
	var wSum float64
	for i := range w {
		w[i] = float64(gain.Data[i]) * u[i]
		wSum += w[i]
	}
	centred := c.m.centred()
	C, B, T := len(d.Labels), d.Resid.Shape[0], d.Resid.Shape[1]
	labels := append([]string(nil), d.Labels...)
	if bias != nil {
		labels = append(labels, "ln_f.bias")
	}
	a := &Attribution{Labels: labels, Values: hooks.Zeros(len(labels), B, T), Actual: hooks.Zeros(B, T)}
	for k := 0; k < C; k++ {
		for bt := 0; bt < B*T; bt++ {
			x := d.Components.Data[(k*B*T+bt)*D : (k*B*T+bt+1)*D]
			var dot, sum float64
			for i, v := range x {
				dot += float64(v) * w[i]
				sum += float64(v)
			}
			if centred {
				dot -= sum / float64(D) * wSum
			}
			a.Values.Data[k*B*T+bt] = float32(dot / float64(scale.Data[bt]))
		}
	}
	if bias != nil {
		var bu float64
		for i, v := range bias.Data {
			bu += float64(v) * u[i]
		}
		for bt := 0; bt < B*T; bt++ {
			a.Values.Data[C*B*T+bt] = float32(bu)
		}
	}
	V := c.Logits.Shape[2]
	for bt := 0; bt < B*T; bt++ {
		a.Actual.Data[bt] = float32(metric.Of(c.Logits.Data[bt*V : (bt+1)*V]))
	}
	return a, nil
}

// direction is the unembedding direction of a logit metric: W_U[:, target]
// minus W_U[:, distractor] for a difference.
func (m *Model) direction(metric Metric) ([]float64, error) {
	u, err := m.unembedColumn(metric.Target)
	if err != nil {
		return nil, err
	}
	if metric.Kind == LogitDiff {
		v, err := m.unembedColumn(metric.Distractor)
		if err != nil {
			return nil, err
		}
		for i := range u {
			u[i] -= v[i]
		}
	}
	return u, nil
}
