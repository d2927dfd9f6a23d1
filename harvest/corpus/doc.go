// Package corpus turns corpus files into a harvest's examples: every
// document of every file, in the order given, joined into one token stream
// with one <|endoftext|> between consecutive documents, cut into consecutive
// windows of the context length (a final partial window is dropped).
//
// It is the first step of the harvest data path: the windows it makes are
// what the shards carry to the workers, and their token ids are what the
// records' token strings are decoded from.
package corpus
