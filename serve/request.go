package serve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/modelctx/tokenizer"
)

// inputRequest is what every model endpoint takes to name its input.
type inputRequest struct {
	Model   string   `json:"model,omitempty"`
	Tokens  [][]int  `json:"tokens,omitempty"`
	Prompts []string `json:"prompts,omitempty"`
	Pad     string   `json:"pad,omitempty"`
}

// decode reads a JSON body into v: at most the body limit (413 beyond),
// one value, no unknown fields (400 naming what is wrong).
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest(fmt.Errorf("malformed JSON: %w", err))
	}
	if dec.More() {
		return badRequest(errors.New("malformed JSON: more than one value in the body"))
	}
	return nil
}

// readBody reads the body up to the body limit (413 beyond).
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.limits.BodyBytes))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, errorf(http.StatusRequestEntityTooLarge, "%v: request body over %d bytes (limit body_bytes)", ErrTooLarge, mb.Limit)
		}
		return nil, fmt.Errorf("reading the request body: %w", err)
	}
	return body, nil
}

// model finds the model a request names ("" is the first one loaded).
func (s *Server) model(name string) (*modelctx.Transformer, string, error) {
	if name == "" {
		name = s.modelNames[0]
	}
	m, ok := s.models[name]
	if !ok {
		return nil, "", errorf(http.StatusNotFound, "%v: model %q (loaded: %s)", ErrNotFound, name, strings.Join(s.modelNames, ", "))
	}
	return m, name, nil
}

// rows turns "tokens" or "prompts" into token rows, checking the size
// limits; prompts is nil for token input.
func (s *Server) rows(in inputRequest, m *modelctx.Transformer) ([][]int, []string, error) {
	var rows [][]int
	switch {
	case in.Tokens != nil && in.Prompts != nil:
		return nil, nil, badRequest(errors.New(`give "tokens" or "prompts", not both`))
	case in.Tokens != nil:
		rows = in.Tokens
	case in.Prompts != nil:
		tok, err := modelTokenizer(m)
		if err != nil {
			return nil, nil, badRequest(err)
		}
		if err := s.checkBatch(len(in.Prompts)); err != nil {
			return nil, nil, err
		}
		for _, p := range in.Prompts {
			rows = append(rows, tok.Encode(p))
		}
	default:
		return nil, nil, badRequest(errors.New(`give "tokens" or "prompts"`))
	}
	if len(rows) == 0 {
		return nil, nil, badRequest(modelctx.ErrEmptyBatch)
	}
	if err := s.checkBatch(len(rows)); err != nil {
		return nil, nil, err
	}
	n := 0
	for _, r := range rows {
		n += len(r)
	}
	if n > s.limits.Tokens {
		return nil, nil, errorf(http.StatusRequestEntityTooLarge, "%v: %d tokens, over %d per request (limit tokens)", ErrTooLarge, n, s.limits.Tokens)
	}
	return rows, in.Prompts, nil
}

func (s *Server) checkBatch(n int) error {
	if n > s.limits.Batch {
		return errorf(http.StatusRequestEntityTooLarge, "%v: %d rows, over %d per request (limit batch)", ErrTooLarge, n, s.limits.Batch)
	}
	return nil
}

func padSide(s string) (modelctx.PadSide, error) {
	side, err := modelctx.ParsePadSide(s)
	return side, badRequest(err)
}

// modelTokenizer is the one place the server finds a model's tokenizer.
func modelTokenizer(m *modelctx.Transformer) (tokenizer.Tokenizer, error) {
	if m == nil {
		return nil, modelctx.ErrNoTokenizer
	}
	return m.Tokenizer()
}

// tokenStrings decodes each id of each row (nil without a tokenizer).
func tokenStrings(tok tokenizer.Tokenizer, rows [][]int) [][]string {
	if tok == nil {
		return nil
	}
	out := make([][]string, len(rows))
	for b, r := range rows {
		out[b] = make([]string, len(r))
		for i, id := range r {
			out[b][i], _ = tok.DecodeToken(id)
		}
	}
	return out
}
