// Package analysis answers a researcher's first questions about a model in
// one call each: activation patching (which layer, position or head
// carries the signal from a clean prompt to a corrupted one), the logit
// lens (what each layer's residual stream predicts), the decomposition of
// the final residual stream into the outputs of the embeddings, heads and
// MLPs, and direct logit attribution.
//
// It sits on top of modelctx: every analysis is made of Transformer.Forward
// calls with hooks, captures and partial runs (StopAtLayer, StartAtLayer),
// plus the model's weights read through its ModelContext. Nothing here
// names an architecture: the final norm is centred (LayerNorm) when the
// model has the resid.ln_f.post_mean_subtraction point and has a bias when
// the model has a final-norm bias weight; RMSNorm models have neither.
//
// Conventions follow TransformerLens where they exist: normalised patching
// scores are (patched - corrupted) / (clean - corrupted); direct logit
// attribution applies the final norm with the final residual stream's own
// scale, frozen, so the contributions add up to the model's logit
// difference, with the final norm's bias as one more component.
package analysis
