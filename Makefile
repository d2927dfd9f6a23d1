# onnx-tdb: the two set-up commands on a fresh machine with Go, gcc and npm are
#   make demo   (the main job: export the shipped test model, tokenize, forward, top tokens, one hook point)
#   make test   (every test)
# Both install what they need (the ONNX Runtime library, Azurite) by themselves.

GO      ?= go
BIN     := bin/onnx-tdb
export CGO_ENABLED := 1

.PHONY: all build ort ort-gpu azurite test test-short demo bench vet fmt proto clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/onnx-tdb

ort:
	@./scripts/install-ort.sh

ort-gpu:
	@./scripts/install-ort-gpu.sh

azurite:
	@./scripts/install-azurite.sh

vet:
	$(GO) vet ./...

fmt:
	gofmt -l -w $$(git ls-files '*.go')

test: ort azurite
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 40m ./...

test-short: ort
	$(GO) test -short -count=1 ./...

demo: ort build
	@./scripts/demo.sh

bench: ort build
	./$(BIN) bench --random-gpt2-small

proto:
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" ./scripts/gen-onnxpb.sh

clean:
	rm -rf bin
