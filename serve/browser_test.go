package serve

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// findBrowser looks for a Chromium the way scripts/install-chromium.sh
// installs it ($ONNX_TDB_CHROMIUM first).
func findBrowser() string {
	if p := os.Getenv("ONNX_TDB_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// browserPage opens url in a headless Chromium; it skips the test, with a
// visible message, when no browser is installed.
func browserPage(t *testing.T, url string) context.Context {
	t.Helper()
	bin := findBrowser()
	if bin == "" {
		t.Skip("SKIP: no Chromium found (run scripts/install-chromium.sh, or set ONNX_TDB_CHROMIUM): the page was not tested in a browser")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.WindowSize(1280, 1100),
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelA)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	if _, err := chromedp.Run(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("opening %s in %s: %v", url, bin, err)
	}
	return ctx
}

// js evaluates an expression in the page.
func js[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// waitFor polls a predicate in the page for up to 30 s.
func waitFor(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(30*time.Second), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		status := js[string](t, ctx, `document.getElementById("status").textContent`)
		t.Fatalf("waiting for %s: %v (page status %q)", what, err, status)
	}
}

type pageTop struct {
	ID    string `json:"id"`
	Text  string `json:"text"`
	Logit string `json:"logit"`
}

const readTop = `(sel) => [...document.querySelectorAll(sel + " li")].map(li => ({id: li.dataset.id, text: li.querySelector(".token").textContent, logit: li.querySelector(".logit").textContent}))`

func TestPageInBrowser(t *testing.T) {
	m := goldenModel(t)
	_, ts, _ := start(t, WithAutoencoder("mlp1", goldenSAE(t)), WithRecords("fake", fakeRecords), WithWorkflows(AnalysisWorkflows()))
	ctx := browserPage(t, ts.URL+"/")
	waitFor(t, ctx, "the first run", `document.getElementById("status").textContent.startsWith("ready:")`)

	// A prompt round-trips: the page shows the API's tokens and top tokens.
	const prompt = "Hello, my name is"
	js[bool](t, ctx, `document.getElementById("prompt").value = `+strconv.Quote(prompt)+`; document.getElementById("run").click(); true`)
	waitFor(t, ctx, "the prompt's tokens", `document.querySelectorAll("#tokens .tok").length === 5 && document.getElementById("status").textContent === "ready: 5 tokens"`)
	var api forwardAnswer
	postOK(t, ts.URL+"/v1/forward", map[string]any{"prompts": []string{prompt}, "top": 10, "points": []string{"attn.qk_probs@1"}}, &api)
	toks := js[[]string](t, ctx, `[...document.querySelectorAll("#tokens .tok")].map(e => e.textContent)`)
	for i, s := range api.Strings[0] {
		if toks[i] != s {
			t.Fatalf("page token %d %q, API %q", i, toks[i], s)
		}
	}
	top := js[[]pageTop](t, ctx, `(`+readTop+`)("#top")`)
	if len(top) != 10 {
		t.Fatalf("page shows %d top tokens, want 10", len(top))
	}
	for i, tt := range api.Top[0] {
		if top[i].ID != strconv.Itoa(tt.ID) || top[i].Logit != strconv.FormatFloat(float64(tt.Logit), 'f', 4, 64) {
			t.Fatalf("page top %d = %+v, API %+v", i, top[i], tt)
		}
	}

	// The attention view: layer 1, head 2 cells hold the API's qk_probs.
	js[bool](t, ctx, `const l = document.getElementById("attn-layer"); l.value = "1"; l.dispatchEvent(new Event("change"));
		const h = document.getElementById("attn-head"); h.value = "2"; h.dispatchEvent(new Event("change")); true`)
	type cell struct {
		Q, K  int
		Value string
	}
	cells := js[[]cell](t, ctx, `[...document.querySelectorAll("#attn .cell")].map(c => ({q: +c.dataset.q, k: +c.dataset.k, value: c.dataset.value}))`)
	probs := api.Activations["attn.qk_probs@1"]
	T, Tk, H := probs.Shape[1], probs.Shape[2], probs.Shape[3]
	if len(cells) != T*Tk {
		t.Fatalf("%d attention cells, want %d", len(cells), T*Tk)
	}
	for _, c := range cells {
		want := probs.Data[(c.Q*Tk+c.K)*H+2]
		got, err := strconv.ParseFloat(c.Value, 64)
		if err != nil || float32(got) != want {
			t.Fatalf("cell q=%d k=%d shows %q, API %v", c.Q, c.K, c.Value, want)
		}
	}
	hover := js[string](t, ctx, `const c = document.querySelector('#attn .cell[data-q="4"][data-k="1"]'); c.dispatchEvent(new MouseEvent("mouseenter")); document.getElementById("attn-hover").textContent`)
	if want := fmt.Sprintf("query 4  is → key 1 ,: %.4f", probs.Data[(4*Tk+1)*H+2]); hover != want {
		t.Fatalf("hover says %q, want %q", hover, want)
	}

	// An ablation changes the shown top tokens, to the API's own answer.
	js[bool](t, ctx, `document.getElementById("abl-point").value = "mlp.post_act"; document.getElementById("abl-layer").value = "1";
		document.getElementById("abl-index").value = ""; document.getElementById("abl-run").click(); true`)
	waitFor(t, ctx, "the ablated top tokens", `!document.getElementById("ablated-col").hidden && document.querySelectorAll("#abl-top li").length === 10`)
	ablated := js[[]pageTop](t, ctx, `(`+readTop+`)("#abl-top")`)
	var apiAbl forwardAnswer
	postOK(t, ts.URL+"/v1/forward", map[string]any{"prompts": []string{prompt}, "top": 10, "ablate": []string{"mlp.post_act@1"}}, &apiAbl)
	changed := false
	for i, tt := range apiAbl.Top[0] {
		if ablated[i].ID != strconv.Itoa(tt.ID) || ablated[i].Logit != strconv.FormatFloat(float64(tt.Logit), 'f', 4, 64) {
			t.Fatalf("page ablated top %d = %+v, API %+v", i, ablated[i], tt)
		}
		changed = changed || ablated[i] != top[i]
	}
	if !changed {
		t.Fatal("the ablation did not change the shown top tokens")
	}

	// SAE latents, a record and the lens grid show because their sources exist.
	js[bool](t, ctx, `document.getElementById("sae-at").value = "mlp.post_act@1"; document.getElementById("sae-run").click(); true`)
	waitFor(t, ctx, "the SAE table", `document.querySelectorAll("#sae-table tr").length === 6`)
	js[bool](t, ctx, `document.getElementById("rec-unit").value = "3"; document.getElementById("rec-run").click(); true`)
	waitFor(t, ctx, "the record", `document.querySelectorAll("#rec .record").length === 2`)
	if bg := js[string](t, ctx, `document.querySelector("#rec .record .tok:nth-child(4)").style.background`); bg != "rgb(46, 160, 67)" {
		t.Fatalf("the record's strongest token is shaded %q, want full green", bg)
	}
	waitFor(t, ctx, "the lens grid", `document.getElementById("lens").textContent.includes("layer 1") && document.querySelectorAll("#lens > div").length === 1 + 5 + 3 * 6`)
	_ = m

	// Leave the ablation shown for the screenshot the README uses.
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	writeScreenshot(t, png)
}

// writeScreenshot saves the page's picture: as docs/serve-page.png of the
// repository (the README's) when ONNX_TDB_SCREENSHOT=1, else in the test's
// temporary folder; written to a temporary name, then renamed.
func writeScreenshot(t *testing.T, png []byte) {
	if len(png) < 1000 {
		t.Fatalf("screenshot of %d bytes", len(png))
	}
	dir := t.TempDir()
	if os.Getenv("ONNX_TDB_SCREENSHOT") == "1" {
		dir = filepath.Join("..", "docs")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.CreateTemp(dir, ".serve-page-*.png")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmp.Write(png); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		t.Fatal(err)
	}
	if err := tmp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, "serve-page.png")); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", filepath.Join(dir, "serve-page.png"), len(png))
}

func TestPageWithBearerToken(t *testing.T) {
	_, ts, _ := start(t, WithToken("s3cret"))
	ctx := browserPage(t, ts.URL+"/")
	waitFor(t, ctx, "the refusal", `document.getElementById("status").textContent.includes("bearer token")`)
	// A new URL (not only a new fragment), so the page loads again.
	if _, err := chromedp.Run(ctx, chromedp.Navigate(ts.URL+"/index.html#token=s3cret")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the first run with the token", `document.getElementById("status").textContent.startsWith("ready:")`)
}
