package sae

import (
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/modelctx/tokenizer"
)

// Latent is one latent's value at a token.
type Latent struct {
	Latent int     `json:"latent"`
	Value  float32 `json:"value"`
}

// TokenLatents is one real token's strongest latents.
type TokenLatents struct {
	Position int      `json:"position"`
	ID       int      `json:"id"`
	Token    string   `json:"token,omitempty"` // "" without a tokenizer
	Latents  []Latent `json:"latents"`
}

// TopLatents lists, row by row, each real (not padded) token's k strongest
// nonzero latents of z [B,T,n_latents], strongest first.
func TopLatents(z *hooks.Tensor, batch modelctx.Batch, k int, tok tokenizer.Tokenizer) [][]TokenLatents {
	B, T, N := z.Shape[0], z.Shape[1], z.Shape[2]
	rows := make([][]TokenLatents, B)
	for b := 0; b < B; b++ {
		rows[b] = []TokenLatents{}
		for t := 0; t < T; t++ {
			if batch.Pad[b][t] {
				continue
			}
			row := z.Data[(b*T+t)*N : (b*T+t+1)*N]
			id := batch.Tokens[b][t]
			st := TokenLatents{Position: t, ID: id, Latents: []Latent{}}
			if tok != nil {
				st.Token, _ = tok.DecodeToken(id)
			}
			for _, i := range modelctx.TopK(row, k) {
				if row[i] == 0 {
					break
				}
				st.Latents = append(st.Latents, Latent{Latent: i, Value: row[i]})
			}
			rows[b] = append(rows[b], st)
		}
	}
	return rows
}
