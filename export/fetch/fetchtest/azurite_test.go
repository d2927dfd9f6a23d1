package fetchtest

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestAzuriteServesAnonymousReadsAndStopsWithTheTest(t *testing.T) {
	var port int
	t.Run("server", func(t *testing.T) {
		a := StartAzurite(t)
		port = a.Port
		if !strings.HasSuffix(a.Endpoint, "/{account}") || strings.ReplaceAll(a.Endpoint, "{account}", Account) != a.ServiceURL {
			t.Errorf("Endpoint %q, ServiceURL %q", a.Endpoint, a.ServiceURL)
		}
		a.Upload("neuron-explainer", "subject-models/gpt2/small/config.json", []byte(`{"enc":"gpt2"}`))
		a.Upload("neuron-explainer", "dir with space/ü.pt", []byte("x"))
		// plain GETs with no credentials, as the public service allows
		for url, want := range map[string]string{
			a.BlobURL("neuron-explainer", "subject-models/gpt2/small/config.json"): `{"enc":"gpt2"}`,
			a.ServiceURL + "/neuron-explainer/dir%20with%20space/%C3%BC.pt":        "x",
		} {
			resp, err := http.Get(url)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(body) != want {
				t.Errorf("GET %s = %d %q, want 200 %q", url, resp.StatusCode, body, want)
			}
		}
	})
	if port == 0 { // skipped: no Azurite
		return
	}
	// the subtest's cleanup has stopped the server
	if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second); err == nil {
		c.Close()
		t.Errorf("azurite still listening on port %d after its test ended", port)
	}
}
