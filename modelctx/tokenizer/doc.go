// Package tokenizer is the interface between a model and its text: what
// the model context (Encode, DecodeToken, ...) and sampling's prompts need
// from a tokenizer, whichever architecture the model is. Architectures
// provide implementations and register them by name (Register); folders
// that ship a tokenizer.json get a generic byte-level BPE (package hfbpe);
// a model without one is driven by token ids.
//
// On the data path it sits before the first stage (text to ids) and after
// the last (ids to text).
package tokenizer
