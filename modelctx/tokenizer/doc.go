// Package tokenizer is the interface between a model and its text: what
// the model context (Encode, DecodeToken, ...) and sampling's prompts need
// from a tokenizer, whichever architecture the model is. Architectures
// provide implementations (GPT-2's byte-pair encoding lives with the GPT-2
// plugin; folders that ship a tokenizer.json get a generic byte-level BPE);
// a model without one is driven by token ids.
//
// On the data path it sits before the first stage (text to ids) and after
// the last (ids to text).
package tokenizer
