package modelctx

import (
	"errors"
	"fmt"
	"math"

	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// ErrLoss is returned for a loss that does not fit the model or the batch.
var ErrLoss = errors.New("bad loss")

// LossKind is one of the original's backward-pass losses (docs/behaviour.md §3.4), or
// one activation element.
type LossKind int

// Loss kinds.
const (
	// LossLogitDiff is the mean target logit minus the mean distractor
	// logit; with no distractors, the mean target logit (the original's
	// LOGIT_DIFF, and with one target the plain logit).
	LossLogitDiff LossKind = iota
	// LossLogitMinusMean is the mean target logit minus the mean of all
	// logits (LOGIT_MINUS_MEAN).
	LossLogitMinusMean
	// LossProbs is the summed softmax probability of the targets (PROBS).
	LossProbs
	// LossZero is 0 * sum(logits): every gradient is zero, so only what bwd
	// hooks write reaches upstream (the original's fake gradients).
	LossZero
	// LossActivation is one element of the value at a hook site (the
	// original's fwd2 "grab"): the backward pass starts there.
	LossActivation
)

// Loss is the scalar a backward pass differentiates. The logit losses are
// computed at one position of each selected row and summed over those rows,
// as the original sums its per-row losses before calling backward.
type Loss struct {
	Kind        LossKind
	Targets     []int // token ids (logit losses)
	Distractors []int // token ids (LossLogitDiff)
	// Rows selects batch rows; nil means every row.
	Rows []int
	// Position is the token position; -1 means each row's last real
	// position (the original reads position -1, which is the same for rows
	// without right padding).
	Position int
	// Site and Index locate the element of a LossActivation: Index is
	// [batch, token, trailing indices...] in the layout of docs/behaviour.md §3.2.
	Site  hooks.Site
	Index []int
}

// LogitLoss is the logit of token at one row and position (the golden
// gradients' scalar). position -1 is the row's last real position.
func LogitLoss(row, position, token int) Loss {
	return Loss{Kind: LossLogitDiff, Targets: []int{token}, Rows: []int{row}, Position: position}
}

// LogitDiffLoss is the mean target logit minus the mean distractor logit at
// each row's last real position, summed over rows.
func LogitDiffLoss(targets, distractors []int) Loss {
	return Loss{Kind: LossLogitDiff, Targets: targets, Distractors: distractors, Position: -1}
}

// LogitMinusMeanLoss is the mean target logit minus the mean logit at each
// row's last real position, summed over rows.
func LogitMinusMeanLoss(targets ...int) Loss {
	return Loss{Kind: LossLogitMinusMean, Targets: targets, Position: -1}
}

// ProbsLoss is the summed probability of the targets at each row's last
// real position, summed over rows.
func ProbsLoss(targets ...int) Loss {
	return Loss{Kind: LossProbs, Targets: targets, Position: -1}
}

// ZeroLoss is 0 * sum(logits).
func ZeroLoss() Loss { return Loss{Kind: LossZero, Position: -1} }

// ActivationLoss is one element of the value at a site: index is [batch,
// token, trailing...] (mlp.post_act at layer 1, row 0, token 9, neuron 7:
// ActivationLoss(hooks.Site{hooks.MLPPostAct, 1}, 0, 9, 7)).
func ActivationLoss(site hooks.Site, index ...int) Loss {
	return Loss{Kind: LossActivation, Site: site, Index: index}
}

func (l Loss) root() hooks.Site {
	if l.Kind == LossActivation {
		return l.Site
	}
	return hooks.Site{Point: hooks.Logits, Layer: -1}
}

func (l Loss) String() string {
	switch l.Kind {
	case LossLogitDiff:
		if len(l.Distractors) == 0 {
			return fmt.Sprintf("logit%v", l.Targets)
		}
		return fmt.Sprintf("logit-diff%v-%v", l.Targets, l.Distractors)
	case LossLogitMinusMean:
		return fmt.Sprintf("logit-minus-mean%v", l.Targets)
	case LossProbs:
		return fmt.Sprintf("probs%v", l.Targets)
	case LossZero:
		return "zero"
	case LossActivation:
		return fmt.Sprintf("%s%v", l.Site, l.Index)
	}
	return fmt.Sprintf("loss(%d)", int(l.Kind))
}

// grad returns the loss value and d(loss)/d(root value). pad is the batch's
// pad mask (for the last real positions).
func (l Loss) grad(v *hooks.Tensor, pad [][]bool) (float64, *hooks.Tensor, error) {
	g := hooks.Zeros(v.Shape...)
	if l.Kind == LossActivation {
		if len(l.Index) != len(v.Shape) {
			return 0, nil, fmt.Errorf("%w: %s has %d axes, the index gives %d", ErrLoss, l.Site, len(v.Shape), len(l.Index))
		}
		for i, x := range l.Index {
			if x < 0 || x >= v.Shape[i] {
				return 0, nil, fmt.Errorf("%w: index %v out of range for %s of shape %v", ErrLoss, l.Index, l.Site, v.Shape)
			}
		}
		off := v.Offset(l.Index...)
		g.Data[off] = 1
		return float64(v.Data[off]), g, nil
	}
	if len(v.Shape) != 3 {
		return 0, nil, fmt.Errorf("%w: logits of shape %v", ErrLoss, v.Shape)
	}
	B, T, V := v.Shape[0], v.Shape[1], v.Shape[2]
	rows, err := l.rows(pad, B, T)
	if err != nil {
		return 0, nil, err
	}
	total := 0.0
	for _, r := range rows {
		off := (r[0]*T + r[1]) * V
		val, err := l.gradRow(v.Data[off:off+V], g.Data[off:off+V])
		if err != nil {
			return 0, nil, err
		}
		total += val
	}
	return total, g, nil
}

// rows lists the (batch, position) rows of the logits a logit loss reads
// (empty for the zero loss).
func (l Loss) rows(pad [][]bool, B, T int) ([][]int, error) {
	rows := [][]int{}
	if l.Kind == LossZero {
		return rows, nil
	}
	bs := l.Rows
	if bs == nil {
		for b := 0; b < B; b++ {
			bs = append(bs, b)
		}
	}
	for _, b := range bs {
		if b < 0 || b >= B {
			return nil, fmt.Errorf("%w: row %d out of range [0,%d)", ErrLoss, b, B)
		}
		pos := l.Position
		if pos < 0 {
			pos = lastReal(pad, b, T)
		}
		if pos >= T {
			return nil, fmt.Errorf("%w: position %d out of range [0,%d)", ErrLoss, pos, T)
		}
		rows = append(rows, []int{b, pos})
	}
	return rows, nil
}

// gradRows is the loss on the logit rows it reads ([len(rows), V]) and
// its gradient there.
func (l Loss) gradRows(v *hooks.Tensor) (float64, *hooks.Tensor, error) {
	g := hooks.Zeros(v.Shape...)
	V := v.Shape[1]
	total := 0.0
	for r := 0; r < v.Shape[0]; r++ {
		val, err := l.gradRow(v.Data[r*V:(r+1)*V], g.Data[r*V:(r+1)*V])
		if err != nil {
			return 0, nil, err
		}
		total += val
	}
	return total, g, nil
}

// gradRow checks the tokens against the vocabulary and adds one row's
// gradient into g, returning its loss.
func (l Loss) gradRow(logits, g []float32) (float64, error) {
	V := len(logits)
	if len(l.Targets) == 0 {
		return 0, fmt.Errorf("%w: %s needs at least one target token", ErrLoss, l)
	}
	for _, t := range append(append([]int(nil), l.Targets...), l.Distractors...) {
		if t < 0 || t >= V {
			return 0, fmt.Errorf("%w: token %d out of range [0,%d)", ErrLoss, t, V)
		}
	}
	if l.Kind != LossLogitDiff && len(l.Distractors) > 0 {
		return 0, fmt.Errorf("%w: distractors only go with the logit-diff loss", ErrLoss)
	}
	return l.rowLoss(logits, g), nil
}

// rowLoss adds the gradient of one row's loss into g and returns its value.
func (l Loss) rowLoss(logits, g []float32) float64 {
	nt := float64(len(l.Targets))
	mean := func(ids []int) float64 {
		s := 0.0
		for _, t := range ids {
			s += float64(logits[t])
		}
		return s / float64(len(ids))
	}
	switch l.Kind {
	case LossLogitDiff:
		val := mean(l.Targets)
		for _, t := range l.Targets {
			g[t] += float32(1 / nt)
		}
		if len(l.Distractors) > 0 {
			val -= mean(l.Distractors)
			for _, t := range l.Distractors {
				g[t] -= float32(1 / float64(len(l.Distractors)))
			}
		}
		return val
	case LossLogitMinusMean:
		all := 0.0
		for _, x := range logits {
			all += float64(x)
		}
		V := float64(len(logits))
		for i := range g {
			g[i] -= float32(1 / V)
		}
		for _, t := range l.Targets {
			g[t] += float32(1 / nt)
		}
		return mean(l.Targets) - all/V
	case LossProbs:
		// p = softmax(logits); loss = sum_t p_t; dloss/dz_i = p_i (count_i - sum_t p_t).
		mx := math.Inf(-1)
		for _, x := range logits {
			mx = math.Max(mx, float64(x))
		}
		p := make([]float64, len(logits))
		z := 0.0
		for i, x := range logits {
			p[i] = math.Exp(float64(x) - mx)
			z += p[i]
		}
		count := map[int]int{} // a repeated target counts twice, as in the original
		s := 0.0
		for _, t := range l.Targets {
			count[t]++
			s += p[t] / z
		}
		for i := range p {
			p[i] /= z
			g[i] += float32(p[i] * (float64(count[i]) - s))
		}
		return s
	}
	return 0
}

// lastReal is row b's last real position (the last position when the row
// has no pad flags).
func lastReal(pad [][]bool, b, T int) int {
	if b >= len(pad) {
		return T - 1
	}
	for p := T - 1; p >= 0; p-- {
		if p < len(pad[b]) && !pad[b][p] {
			return p
		}
	}
	return T - 1
}
