// Package bpe is the GPT-2 byte-pair tokenizer that TDB's models use
// (tiktoken's "gpt2" encoding), the GPT-2 plugin's implementation of
// modelctx/tokenizer.Tokenizer. It sits beside the model context:
// ModelContext.encode, decode_token, decode_token_list and
// encode_token_str(_list) map onto Encode, DecodeToken, DecodeTokens and
// EncodeSingleToken(s), and Transformer.sample's prompt encoding maps onto
// EncodeOrdinary.
//
// It wraps github.com/pkoukk/tiktoken-go with the BPE ranks that
// github.com/pkoukk/tiktoken-go-loader embeds in the binary, so nothing is
// ever downloaded: the ranks are read from the embedded r50k_base.tiktoken
// file (the same ranks as tiktoken's "gpt2"), checked against tiktoken's
// published SHA-256, and handed to tiktoken-go's CoreBPE directly. The
// package never goes through tiktoken-go's global BPE loader, whose default
// fetches files over HTTP.
package bpe
