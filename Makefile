# onnx-tdb: the two set-up commands on a fresh machine with Go, gcc and npm are
#   make demo   (the main job: export the shipped test model, tokenize, forward, top tokens, one hook point)
#   make test   (every test)
# Both install what they need (the ONNX Runtime library, Azurite, Chromium for
# the web page's browser test) by themselves.

GO      ?= go
BIN     := bin/onnx-tdb
export CGO_ENABLED := 1

.PHONY: all build ort ort-gpu azurite chromium test test-short demo bench vet fmt proto clean fuzz

all: build

build:
	$(GO) build -o $(BIN) ./cmd/onnx-tdb

ort:
	@./scripts/install-ort.sh

ort-gpu:
	@./scripts/install-ort-gpu.sh

azurite:
	@./scripts/install-azurite.sh

chromium:
	@./scripts/install-chromium.sh

vet:
	$(GO) vet ./...

fmt:
	gofmt -l -w $$(git ls-files '*.go')

test: ort azurite chromium
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 40m ./...

test-short: ort
	$(GO) test -short -count=1 ./...

demo: ort build
	@./scripts/demo.sh

# The README's table: three fresh processes, each cycling through three
# instances of each model (~16 minutes on 2 cores).
bench: ort build
	./$(BIN) bench --random-gpt2-small --shapes 1x16,1x128,4x128 --min-time 20s --max-time 60s --processes 3

# Each fuzz target for FUZZTIME (go test runs their seed corpora in every
# test run; this explores beyond them).
FUZZTIME ?= 10s
FUZZ_TARGETS := \
	./analysis:FuzzParseToken \
	./cmd/onnx-tdb:FuzzParseLayers \
	./cmd/onnx-tdb:FuzzParseShapes \
	./cmd/onnx-tdb:FuzzParseTarget \
	./cmd/onnx-tdb:FuzzParseTokenRows \
	./export/arch/gpt2/bpe:FuzzDecode \
	./export/arch/gpt2:FuzzParseHFConfig \
	./export/arch/gpt2:FuzzParseTDBConfig \
	./export/arch/llama:FuzzParseConfig \
	./export/fetch:FuzzParse \
	./export/npy:FuzzRead \
	./export/safetensors:FuzzParseHeader \
	./export/torchpt:FuzzLoad \
	./export:FuzzReadHookMap \
	./export:FuzzReadManifest \
	./graphs:FuzzReadModel \
	./harvest/collect:FuzzDecode \
	./harvest/queue:FuzzDecodeShard \
	./harvest/records:FuzzUnmarshal \
	./hooks:FuzzParseEditTarget \
	./modelctx/tokenizer/hfbpe:FuzzDecode \
	./modelctx/tokenizer/hfbpe:FuzzParse \
	./sae:FuzzFromStateDict \
	./sae:FuzzReadManifest \
	./sae:FuzzSAELensCfg \
	./sae:FuzzSAELensFolder \
	./serve:FuzzForwardBody \
	./viz:FuzzParseRecord

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "== $$pkg $$fn"; \
		$(GO) test $$pkg -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME); \
	done

proto:
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" ./scripts/gen-onnxpb.sh

clean:
	rm -rf bin
