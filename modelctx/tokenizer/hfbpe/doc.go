// Package hfbpe is a generic byte-level BPE tokenizer read from a Hugging
// Face tokenizer.json (the kind byte-level BPE models ship): the
// BPE model's vocab and merges, a pre-tokenizer of Split (regex, isolated
// matches) and ByteLevel steps, and the added (special) tokens, which are
// matched in text before anything else.
//
// On the data path it sits before the first stage graph (text to ids) and
// after the last (ids to text), behind the modelctx/tokenizer interface: an
// architecture that exports a folder's tokenizer.json copies it into the
// exported model and names this package's tokenizer (Name) in the manifest;
// the registration in this package's init opens it from there.
//
// tokenizer.json is untrusted input: sizes, ids and regular expressions are
// checked at Parse, and a pattern's matching is bounded in time.
package hfbpe
