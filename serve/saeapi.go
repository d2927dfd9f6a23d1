package serve

import (
	"fmt"
	"net/http"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/sae"
)

type saeRequest struct {
	inputRequest
	SAE string `json:"sae"` // a loaded autoencoder's name
	At  string `json:"at"`  // POINT@LAYER it reads
	K   int    `json:"k,omitempty"`
}

// encodeLatents runs the model to the autoencoder's input point and
// encodes it: z [B,T,n_latents], padded positions included.
func (s *Server) encodeLatents(r *http.Request, req saeRequest) (*hooks.Tensor, modelctx.Batch, *modelctx.Transformer, error) {
	m, _, err := s.model(req.Model)
	if err != nil {
		return nil, modelctx.Batch{}, nil, err
	}
	site, err := s.saeSite(req.At, m)
	if err != nil {
		return nil, modelctx.Batch{}, nil, badRequest(fmt.Errorf("at %w", err))
	}
	ae, err := s.autoencoder(req.SAE, m, site)
	if err != nil {
		return nil, modelctx.Batch{}, nil, badRequest(fmt.Errorf("sae %w", err))
	}
	rows, _, err := s.rows(req.inputRequest, m)
	if err != nil {
		return nil, modelctx.Batch{}, nil, err
	}
	side, err := padSide(req.Pad)
	if err != nil {
		return nil, modelctx.Batch{}, nil, err
	}
	var z *hooks.Tensor
	err = s.run(r.Context(), func() error {
		got := map[hooks.Site]*hooks.Tensor{}
		if _, err := m.Forward(r.Context(), rows, modelctx.WithPad(side),
			modelctx.WithHooks(captureHooks([]hooks.Site{site}, got))); err != nil {
			return err
		}
		z, err = ae.Encode(r.Context(), got[site])
		return err
	})
	return z, modelctx.PadRows(rows, side), m, err
}

func (s *Server) handleSAEEncode(w http.ResponseWriter, r *http.Request) error {
	var req saeRequest
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	z, _, _, err := s.encodeLatents(r, req)
	if err != nil {
		return err
	}
	if wantsNPY(r) {
		return writeNPY(w, z)
	}
	writeJSON(w, http.StatusOK, map[string]any{"latents": tensorOf(z)})
	return nil
}

func (s *Server) handleSAETop(w http.ResponseWriter, r *http.Request) error {
	var req saeRequest
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	if req.K == 0 {
		req.K = 10
	}
	if req.K < 0 {
		return badRequest(fmt.Errorf("k %d: want a positive count", req.K))
	}
	z, batch, m, err := s.encodeLatents(r, req)
	if err != nil {
		return err
	}
	tok, _ := modelTokenizer(m)
	writeJSON(w, http.StatusOK, map[string]any{"sae": req.SAE, "at": req.At, "rows": sae.TopLatents(z, batch, req.K, tok)})
	return nil
}
