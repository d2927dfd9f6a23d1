package viz

import (
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
)

// ErrRecord is returned for JSON that is not a neuron record.
var ErrRecord = errors.New("viz: not a neuron record")

// Sequence is one example of a record: tokens and the unit's activation at
// each.
type Sequence struct {
	Tokens      []string  `json:"tokens"`
	Activations []float64 `json:"activations"`
}

// Record is the part of TDB's NeuronRecord that the viewer draws. Other
// keys of the JSON are ignored.
type Record struct {
	NeuronID      json.RawMessage `json:"neuron_id"`
	MostPositive  []Sequence      `json:"most_positive_activation_records"`
	RandomSample  []Sequence      `json:"random_sample"`
	MaxActivation float64         `json:"max_activation"`
}

// ParseRecord reads a NeuronRecord's JSON and checks that every sequence
// has one activation per token.
func ParseRecord(data []byte) (*Record, error) {
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRecord, err)
	}
	check := func(what string, seqs []Sequence) error {
		for i, s := range seqs {
			if len(s.Tokens) != len(s.Activations) {
				return fmt.Errorf("%w: %s[%d] has %d tokens and %d activations", ErrRecord, what, i, len(s.Tokens), len(s.Activations))
			}
		}
		return nil
	}
	if err := check("most_positive_activation_records", r.MostPositive); err != nil {
		return nil, err
	}
	if err := check("random_sample", r.RandomSample); err != nil {
		return nil, err
	}
	if len(r.MostPositive) == 0 && len(r.RandomSample) == 0 {
		return nil, fmt.Errorf("%w: no most_positive_activation_records and no random_sample", ErrRecord)
	}
	return &r, nil
}

// max is the largest activation shown (the record's own max_activation
// when larger).
func (r *Record) max() float64 {
	m := r.MaxActivation
	for _, set := range [][]Sequence{r.MostPositive, r.RandomSample} {
		for _, s := range set {
			for _, a := range s.Activations {
				if a > m && !math.IsInf(a, 0) {
					m = a
				}
			}
		}
	}
	return m
}

type shadedToken struct {
	Text  string
	Value float64
	Style template.CSS
}

type shadedSeq struct{ Tokens []shadedToken }

func (r *Record) shaded(seqs []Sequence, max float64) []shadedSeq {
	var out []shadedSeq
	for _, s := range seqs {
		var ss shadedSeq
		for i, t := range s.Tokens {
			a := s.Activations[i]
			alpha := 0.0
			if max > 0 && a > 0 && !math.IsNaN(a) {
				alpha = math.Min(1, a/max)
			}
			ss.Tokens = append(ss.Tokens, shadedToken{Text: t, Value: a, Style: template.CSS(fmt.Sprintf("background: rgba(46, 160, 67, %.3f)", alpha))})
		}
		out = append(out, ss)
	}
	return out
}

// WriteRecordHTML writes a self-contained page of the record: its top
// examples, then its random sample, with each token shaded by its
// activation relative to the largest (as TDB's neuron viewer).
func WriteRecordHTML(w io.Writer, r *Record, title string) error {
	if title == "" {
		title = "neuron " + strings.TrimSpace(string(r.NeuronID))
	}
	max := r.max()
	return recordPage.Execute(w, map[string]any{
		"Title": title, "Max": max,
		"Top": r.shaded(r.MostPositive, max), "Random": r.shaded(r.RandomSample, max),
	})
}

var recordPage = template.Must(template.New("record").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1em; }
.seq { font-family: ui-monospace, monospace; white-space: pre-wrap; line-height: 1.9; margin: .3em 0; }
.tok { border-radius: 2px; padding: 1px 0; }
</style></head><body>
<h1 style="font-size:1.1em">{{.Title}}</h1>
<p>max activation {{printf "%.4g" .Max}}</p>
{{if .Top}}<h2 style="font-size:1em">Top activating examples</h2>
{{range .Top}}<div class="seq">{{range .Tokens}}<span class="tok" style="{{.Style}}" title="{{printf "%.4g" .Value}}">{{.Text}}</span>{{end}}</div>
{{end}}{{end}}{{if .Random}}<h2 style="font-size:1em">Random sample</h2>
{{range .Random}}<div class="seq">{{range .Tokens}}<span class="tok" style="{{.Style}}" title="{{printf "%.4g" .Value}}">{{.Text}}</span>{{end}}</div>
{{end}}{{end}}</body></html>
`))
