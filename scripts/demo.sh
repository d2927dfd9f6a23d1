#!/usr/bin/env bash
# make demo: the main job on the model shipped in testdata (a tiny random
# GPT-2 in TDB's own checkpoint format): export it, tokenize a prompt, run a
# forward pass, print the top next tokens and read one hook point.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=./bin/onnx-tdb
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
model=testdata/golden/model

echo "== export: TDB checkpoint $model -> exported model directory"
$bin export --model "$model" --out "$work/exported"
ls "$work/exported"
echo
echo "== forward: top next tokens (the weights are random, so the tokens are too)"
$bin forward --model "$work/exported" --prompt "The quick brown fox jumps over the lazy dog." --top 5
echo
echo "== forward: read hook point mlp.post_act at layer 1 (shape [batch, tokens, d_ff])"
$bin forward --model "$work/exported" --prompt "The quick brown fox" --points mlp.post_act --layers 1 --top 1
echo
echo "== forward: ablate neuron 7 of mlp.post_act at layer 1, save every activation"
$bin forward --model "$work/exported" --prompt "The quick brown fox" --ablate mlp.post_act@1:7 --save-activations "$work/acts" --top 3
echo "saved $(ls "$work/acts" | wc -l) .npy files, e.g. $(ls "$work/acts" | head -3 | tr '\n' ' ')"
echo
echo "== lens: what each layer's residual stream predicts, through the final LayerNorm and the unembedding"
$bin lens --model "$work/exported" --prompt "The quick brown fox" -k 3 | head -6
echo
echo "== dla: which components write the top token's logit at the last position"
$bin dla --model "$work/exported" --prompt "The quick brown fox" --target "athy" --per layer -k 5
echo
echo "== serve: the same model behind a JSON API and a web page (not started here):"
echo "   $bin serve --model $model    # then open http://127.0.0.1:8080/"
