package serve

import (
	"bytes"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/internal/syncbuf"

	"github.com/onnx-tdb/onnx-tdb/internal/goldenmodel"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

var (
	modelOnce sync.Once
	testModel *modelctx.Transformer
	modelErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if testModel != nil {
		testModel.Close()
	}
	if testAE != nil {
		testAE.Close()
	}
	if saeDir != "" {
		os.RemoveAll(saeDir)
	}
	goldenmodel.Cleanup()
	os.Exit(code)
}

func tempDir() (string, error) { return os.MkdirTemp("", "onnx-tdb-serve-") }

// goldenModel opens the golden model once per test binary.
func goldenModel(t testing.TB) *modelctx.Transformer {
	t.Helper()
	dir := goldenmodel.Dir(t)
	modelOnce.Do(func() {
		dev, id := goldenmodel.Device(t)
		testModel, modelErr = modelctx.Open(dir, modelctx.WithDevice(dev, id))
	})
	if modelErr != nil {
		t.Fatal(modelErr)
	}
	return testModel
}

// start serves the golden model (as "golden") with opts on a loopback
// test server; logs holds the access log.
func start(t testing.TB, opts ...Option) (*Server, *httptest.Server, *syncbuf.Buffer) {
	t.Helper()
	logs := &syncbuf.Buffer{}
	all := append([]Option{WithModel("golden", goldenModel(t)), WithLogger(log.New(logs, "", 0))}, opts...)
	s, err := New(all...)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts, logs
}

// post sends body as JSON and returns the status and the answer.
func post(t testing.TB, url string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case string:
		rd = bytes.NewReader([]byte(b))
	case []byte:
		rd = bytes.NewReader(b)
	default:
		js, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(js)
	}
	resp, err := http.Post(url, "application/json", rd)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

// postOK posts and decodes a 200 answer into v.
func postOK(t testing.TB, url string, body, v any) {
	t.Helper()
	code, out := post(t, url, body)
	if code != http.StatusOK {
		t.Fatalf("POST %s: %d %s", url, code, out)
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("POST %s: %v in %s", url, err, out)
	}
}

type forwardAnswer struct {
	Tokens      [][]int                `json:"tokens"`
	Strings     [][]string             `json:"strings"`
	Positions   []int                  `json:"positions"`
	Top         [][]topToken           `json:"top"`
	Activations map[string]*tensorJSON `json:"activations"`
	LogitsLast  *tensorJSON            `json:"logits_last"`
}

func readAll(t testing.TB, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
