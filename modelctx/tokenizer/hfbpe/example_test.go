package hfbpe_test

import (
	"fmt"
	"log"

	"github.com/onnx-tdb/onnx-tdb/modelctx/tokenizer/hfbpe"
)

// A tokenizer.json with a handful of byte-level tokens and merges.
const tinyTokenizer = `{
  "added_tokens": [{"id": 9, "content": "<|end_of_text|>", "special": true}],
  "normalizer": null,
  "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
  "model": {
    "type": "BPE",
    "vocab": {"h": 0, "i": 1, "Ġ": 2, "t": 3, "e": 4, "hi": 5, "Ġt": 6, "Ġth": 7, "Ġthe": 8},
    "merges": ["h i", "Ġ t", "Ġt h", "Ġth e"]
  }
}`

func ExampleParse() {
	tok, err := hfbpe.Parse([]byte(tinyTokenizer))
	if err != nil {
		log.Fatal(err)
	}
	ids := tok.Encode("hi the<|end_of_text|>")
	text, _ := tok.Decode(ids)
	fmt.Println(ids, tok.EOT())
	fmt.Printf("%q\n", text)
	// Output:
	// [5 8 9] 9
	// "hi the<|end_of_text|>"
}
