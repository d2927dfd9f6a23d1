package bpe_test

import (
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/export/arch/gpt2/bpe"
)

func ExampleTokenizer_Encode() {
	tok, err := bpe.GPT2()
	if err != nil {
		panic(err)
	}
	ids := tok.Encode("Hello world<|endoftext|>")
	fmt.Println(ids)
	parts, _ := tok.DecodeTokens(tok.Encode(" 🤖"))
	fmt.Printf("%+q\n", parts) // partial UTF-8 tokens decode to U+FFFD
	_, err = tok.EncodeOrdinary("<|endoftext|>")
	fmt.Println(err)
	// Output:
	// [15496 995 50256]
	// [" \ufffd" "\ufffd" "\ufffd"]
	// tokenizer: encode: disallowed special token "<|endoftext|>" at byte 0
}
