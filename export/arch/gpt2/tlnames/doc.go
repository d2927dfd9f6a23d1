// Package tlnames maps TransformerLens hook names of GPT-2
// (blocks.L.hook_resid_pre, blocks.L.attn.hook_z, ...) onto TDB's hook
// sites, with the affine map between TDB's values there and what TL's
// hook holds after its weight processing (fold_ln,
// center_writing_weights, fold_value_biases).
//
// On the data path it sits beside the GPT-2 plugin: sae binds SAELens SAEs
// through its Resolver, and the CLI resolves TL-named site flags with it,
// so an SAE sees what it saw in training and an edit made in TL's
// coordinates is written back in TDB's.
package tlnames
