package serve

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

type sampleRequest struct {
	inputRequest
	editRequest
	N           int      `json:"n"`
	Temperature *float64 `json:"temperature,omitempty"` // default 1
	TopP        *float64 `json:"top_p,omitempty"`
	Seed        *uint64  `json:"seed,omitempty"`
	StopAtEOT   bool     `json:"stop_at_eot,omitempty"`
	Stream      bool     `json:"stream,omitempty"`
}

// sampleEvent is one token of a streamed sample ("token" events).
type sampleEvent struct {
	Row  int    `json:"row"`
	Step int    `json:"step"`
	ID   int    `json:"id"`
	Text string `json:"text,omitempty"`
}

// handleSample continues prompts (left-padded, as the CLI's sample). With
// "stream": true or Accept: text/event-stream the tokens come as
// server-sent events ("token" events, then one "done" event with the whole
// result, or an "error" event).
func (s *Server) handleSample(w http.ResponseWriter, r *http.Request) error {
	var req sampleRequest
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	m, _, err := s.model(req.Model)
	if err != nil {
		return err
	}
	if req.Pad != "" && req.Pad != "left" {
		return badRequest(errors.New(`pad: sampling pads on the left`))
	}
	rows, prompts, err := s.rows(req.inputRequest, m)
	if err != nil {
		return err
	}
	if req.N <= 0 || req.N > s.limits.SampleTokens {
		if req.N > s.limits.SampleTokens {
			return errorf(http.StatusRequestEntityTooLarge, "%v: n %d, over %d new tokens (limit sample_tokens)", ErrTooLarge, req.N, s.limits.SampleTokens)
		}
		return badRequest(fmt.Errorf("n %d: want a positive number of new tokens", req.N))
	}
	opts := []modelctx.SampleOption{modelctx.WithNumTokens(req.N)}
	if req.Temperature != nil {
		opts = append(opts, modelctx.WithTemperature(*req.Temperature))
	}
	if req.TopP != nil {
		opts = append(opts, modelctx.WithTopP(*req.TopP))
	}
	if req.Seed != nil {
		opts = append(opts, modelctx.WithSeed(*req.Seed))
	}
	if req.StopAtEOT {
		opts = append(opts, modelctx.WithStopAtEOT())
	}
	ho, err := s.editHooks(req.editRequest, m)
	if err != nil {
		return err
	}
	for _, o := range ho {
		opts = append(opts, o)
	}
	p := modelctx.TokenPrompts(rows...)
	if prompts != nil {
		p = modelctx.TextPrompts(prompts...)
	}
	stream := req.Stream || strings.Contains(r.Header.Get("Accept"), "text/event-stream")
	var sse *eventWriter
	if stream {
		sse = newEventWriter(w)
		opts = append(opts, modelctx.WithOnToken(func(st modelctx.SampledToken) error {
			return sse.send("token", sampleEvent{Row: st.Row, Step: st.Step, ID: st.ID, Text: st.Text})
		}))
	}
	var res *modelctx.SampleResult
	err = s.run(r.Context(), func() error {
		var err error
		res, err = m.Sample(r.Context(), p, opts...)
		return err
	})
	if stream && sse.started {
		if err != nil {
			_ = sse.send("error", map[string]any{"error": err.Error(), "status": statusOf(err)})
			return nil
		}
		_ = sse.send("done", res)
		return nil
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// eventWriter writes server-sent events, starting the stream on the first.
type eventWriter struct {
	w       http.ResponseWriter
	started bool
}

func newEventWriter(w http.ResponseWriter) *eventWriter { return &eventWriter{w: w} }

func (e *eventWriter) send(event string, v any) error {
	if !e.started {
		h := e.w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		e.w.WriteHeader(http.StatusOK)
		e.started = true
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(e.w, "event: %s\ndata: %s\n\n", event, data); err != nil {
		return err
	}
	return http.NewResponseController(e.w).Flush()
}
