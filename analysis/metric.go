package analysis

import (
	"errors"
	"fmt"
	"math"
)

// MetricKind is what a patching metric reads from the logits.
type MetricKind int

// Metric kinds.
const (
	LogitDiff MetricKind = iota // logit[target] - logit[distractor]
	Logit                       // logit[target]
	Prob                        // softmax(logits)[target]
)

// ErrMetric reports an unknown metric name or a metric without its tokens.
var ErrMetric = errors.New("bad metric")

// ParseMetricKind parses "logit-diff", "logit" or "prob".
func ParseMetricKind(s string) (MetricKind, error) {
	switch s {
	case "", "logit-diff":
		return LogitDiff, nil
	case "logit":
		return Logit, nil
	case "prob":
		return Prob, nil
	}
	return 0, fmt.Errorf("%w: %q: want logit-diff, logit or prob", ErrMetric, s)
}

func (k MetricKind) String() string {
	switch k {
	case LogitDiff:
		return "logit-diff"
	case Logit:
		return "logit"
	case Prob:
		return "prob"
	}
	return fmt.Sprintf("MetricKind(%d)", int(k))
}

// Metric is read from the logits at the last position of a row.
type Metric struct {
	Kind       MetricKind
	Target     int
	Distractor int // used by LogitDiff only
}

// check validates the metric's token ids against a vocabulary of size V.
func (m Metric) check(V int) error {
	ids := []int{m.Target}
	if m.Kind == LogitDiff {
		ids = append(ids, m.Distractor)
	}
	for _, id := range ids {
		if id < 0 || id >= V {
			return fmt.Errorf("%w: id %d, the vocabulary is [0,%d)", ErrToken, id, V)
		}
	}
	return nil
}

// Of reads the metric from one position's logits ([V]).
func (m Metric) Of(logits []float32) float64 {
	switch m.Kind {
	case LogitDiff:
		return float64(logits[m.Target]) - float64(logits[m.Distractor])
	case Logit:
		return float64(logits[m.Target])
	}
	return softmaxAt(logits, m.Target)
}

// softmaxAt is softmax(logits)[i], in float64.
func softmaxAt(logits []float32, i int) float64 { return topProbs(logits, []int{i})[0] }

// Normalize is (patched - corrupted) / (clean - corrupted), or ErrUndefined
// when clean equals corrupted.
func Normalize(patched, clean, corrupted float64) (float64, error) {
	d := clean - corrupted
	if d == 0 || math.Abs(d) <= 1e-7*math.Max(math.Abs(clean), math.Abs(corrupted)) {
		return 0, fmt.Errorf("%w (both %g)", ErrUndefined, clean)
	}
	return (patched - corrupted) / d, nil
}

// topProbs is softmax(logits) at each of ids, in float64.
func topProbs(logits []float32, ids []int) []float64 {
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = math.Max(mx, float64(v))
	}
	var z float64
	for _, v := range logits {
		z += math.Exp(float64(v) - mx)
	}
	out := make([]float64, len(ids))
	for i, id := range ids {
		out[i] = math.Exp(float64(logits[id])-mx) / z
	}
	return out
}
