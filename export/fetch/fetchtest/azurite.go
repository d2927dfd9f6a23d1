package fetchtest

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onnx-tdb/onnx-tdb/internal/syncbuf"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
)

const (
	// Account is the storage account Azurite serves, named like the public one.
	Account = "openaipublic"
	// Key is Account's shared key (base64), used only to create containers and upload.
	Key = "b25ueC10ZGItYXp1cml0ZS10ZXN0LWtleS0wMDAwMDA="
	// AzuriteVersion is the version scripts/install-azurite.sh installs; keep the two in step.
	AzuriteVersion = "3.35.0"
	// AzuriteEnv names the azurite-blob executable to use instead of the installed one.
	AzuriteEnv = "ONNX_TDB_AZURITE"

	startTimeout = 30 * time.Second
	stopTimeout  = 5 * time.Second
)

// Azurite is a running Azurite blob server. It stops when the test that started it ends.
type Azurite struct {
	// Endpoint is the path-style service URL with the "{account}" placeholder that
	// fetch.Options.Endpoint takes, e.g. "http://127.0.0.1:41234/{account}".
	Endpoint string
	// ServiceURL is Endpoint with the account filled in, e.g. "http://127.0.0.1:41234/openaipublic".
	ServiceURL string
	// Port is the loopback port the server listens on.
	Port int

	t    testing.TB
	cred *azblob.SharedKeyCredential

	mu         sync.Mutex
	containers map[string]bool // created, with anonymous blob read access
}

// Binary returns the azurite-blob executable: $ONNX_TDB_AZURITE, else the one
// scripts/install-azurite.sh put in ${XDG_CACHE_HOME:-~/.cache}/onnx-tdb/azurite/<version>,
// else azurite-blob on $PATH.
func Binary() (string, error) {
	if p := os.Getenv(AzuriteEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", AzuriteEnv, p, err)
		}
		return p, nil
	}
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		if home, err := os.UserHomeDir(); err == nil {
			base = filepath.Join(home, ".cache")
		}
	}
	if base != "" {
		p := filepath.Join(base, "onnx-tdb", "azurite", AzuriteVersion, "node_modules", ".bin", "azurite-blob")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("azurite-blob"); err == nil {
		return p, nil
	}
	return "", errors.New("azurite-blob not found")
}

// StartAzurite starts Azurite's blob server on a free loopback port, with its data in a
// temporary folder, and stops it (its whole process group) when the test ends. When Azurite is
// not installed it skips the test, or fails it under CI=true.
func StartAzurite(t testing.TB) *Azurite {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		msg := fmt.Sprintf("\n*** AZURITE NOT INSTALLED: %v. Run `make azurite` (scripts/install-azurite.sh) "+
			"or set %s to an azurite-blob executable. Blob storage tests did not run. ***", err, AzuriteEnv)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	var lastErr error
	for range 3 { // another process may take the free port before Azurite binds it
		a, err := start(t, bin)
		if err == nil {
			return a
		}
		lastErr = err
	}
	t.Fatalf("fetchtest: start azurite: %v", lastErr)
	return nil
}

func start(t testing.TB, bin string) (*Azurite, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := t.TempDir()
	out := &syncbuf.Buffer{}
	cmd := exec.Command(bin,
		"--blobHost", "127.0.0.1", "--blobPort", strconv.Itoa(port), "--location", dir,
		"--silent", "--loose", "--skipApiVersionCheck", "--disableTelemetry")
	cmd.Env = append(os.Environ(), "AZURITE_ACCOUNTS="+Account+":"+Key)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop := func() {
		terminate(cmd.Process)
		select {
		case <-exited:
		case <-time.After(stopTimeout):
			kill(cmd.Process)
			<-exited
		}
	}
	if err := waitListening(port, exited); err != nil {
		stop()
		return nil, fmt.Errorf("%w; azurite said: %s", err, strings.TrimSpace(out.String()))
	}
	t.Cleanup(stop)

	a := &Azurite{
		Endpoint:   "http://127.0.0.1:" + strconv.Itoa(port) + "/{account}",
		ServiceURL: "http://127.0.0.1:" + strconv.Itoa(port) + "/" + Account,
		Port:       port,
		t:          t,
		containers: make(map[string]bool),
	}
	a.cred, err = azblob.NewSharedKeyCredential(Account, Key)
	if err != nil {
		return nil, err
	}
	return a, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitListening(port int, exited <-chan struct{}) error {
	addr := "127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("azurite exited before listening")
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("azurite not listening on %s after %s", addr, startTimeout)
}

// clientOptions are for the set-up clients: no retries, so a broken server fails fast.
func clientOptions() azcore.ClientOptions {
	return azcore.ClientOptions{Retry: policy.RetryOptions{MaxRetries: -1}}
}

// CreateContainer creates a container that allows anonymous reads of its blobs, unless it exists.
func (a *Azurite) CreateContainer(name string) {
	a.t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.containers[name] {
		return
	}
	c, err := container.NewClientWithSharedKeyCredential(a.ServiceURL+"/"+name, a.cred,
		&container.ClientOptions{ClientOptions: clientOptions()})
	if err == nil {
		access := container.PublicAccessTypeBlob
		_, err = c.Create(context.Background(), &container.CreateOptions{Access: &access})
	}
	if err != nil && !bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
		a.t.Fatalf("fetchtest: create container %s: %v", name, err)
	}
	a.containers[name] = true
}

// Upload writes data to <container>/<path>, creating the container (anonymous read) if needed.
// The blob gets its Content-MD5, as the real service sets on a single-shot upload.
func (a *Azurite) Upload(containerName, path string, data []byte) {
	a.t.Helper()
	a.CreateContainer(containerName)
	c, err := blockblob.NewClientWithSharedKeyCredential(a.BlobURL(containerName, path), a.cred,
		&blockblob.ClientOptions{ClientOptions: clientOptions()})
	if err == nil {
		sum := md5.Sum(data)
		_, err = c.Upload(context.Background(), streaming.NopCloser(bytes.NewReader(data)),
			&blockblob.UploadOptions{HTTPHeaders: &blob.HTTPHeaders{BlobContentMD5: sum[:]}})
	}
	if err != nil {
		a.t.Fatalf("fetchtest: upload %s/%s: %v", containerName, path, err)
	}
}

// UploadFile uploads the local file to <container>/<path>.
func (a *Azurite) UploadFile(containerName, path, file string) {
	a.t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		a.t.Fatalf("fetchtest: %v", err)
	}
	a.Upload(containerName, path, data)
}

// UploadDir uploads every regular file under dir to <container>/<prefix>/<relative path> and
// returns the blob paths, in the order filepath.WalkDir visits them.
func (a *Azurite) UploadDir(containerName, prefix, dir string) []string {
	a.t.Helper()
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(strings.TrimSuffix(prefix, "/")+"/"+filepath.ToSlash(rel), "/")
		a.UploadFile(containerName, name, p)
		paths = append(paths, name)
		return nil
	})
	if err != nil {
		a.t.Fatalf("fetchtest: upload %s: %v", dir, err)
	}
	return paths
}

// BlobURL is the URL of <container>/<path> on this server, the path escaped segment by segment.
func (a *Azurite) BlobURL(containerName, path string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return a.ServiceURL + "/" + containerName + "/" + strings.Join(segs, "/")
}
