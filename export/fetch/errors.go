package fetch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
)

// Errors a caller can test with errors.Is. Every error from this package also names the URL.
var (
	// ErrBadLocation: not an az:// or https://<account>.blob.core.windows.net/ location, or bad names in it.
	ErrBadLocation = errors.New("bad blob location")
	// ErrNotFound: the service answered 404 (BlobNotFound, ContainerNotFound, ...).
	ErrNotFound = errors.New("blob not found")
	// ErrUnreachable: the service could not be reached (DNS, dial, TLS, timeouts, a stalled transfer).
	ErrUnreachable = errors.New("blob storage unreachable")
	// ErrCorrupt: the bytes received do not match the Content-Length or the Content-MD5 the service sent.
	ErrCorrupt = errors.New("download corrupt")
)

// fetchError is an error about one URL: a short message, the sentinel it is, and the cause.
type fetchError struct {
	url   string
	msg   string
	kind  error // one of the Err values, or nil
	cause error // what the SDK or the OS said, kept for errors.As
}

func (e *fetchError) Error() string { return "fetch " + e.url + ": " + e.msg }

func (e *fetchError) Unwrap() []error {
	var errs []error
	for _, err := range []error{e.kind, e.cause} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// classify turns an error from a request to u into a fetchError. parent is the caller's
// context: when it is done, its error wins over whatever the cancellation caused downstream.
func classify(parent context.Context, u string, err error) error {
	var fe *fetchError
	if errors.As(err, &fe) {
		return err
	}
	if parent.Err() != nil {
		return &fetchError{url: u, msg: context.Cause(parent).Error(), cause: context.Cause(parent)}
	}
	var stall *stallError
	if errors.As(err, &stall) {
		return unreachable(u, stall)
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return statusError(u, re)
	}
	if isNetworkError(err) {
		return unreachable(u, err)
	}
	return &fetchError{url: u, msg: err.Error(), cause: err}
}

func statusError(u string, re *azcore.ResponseError) error {
	msg := fmt.Sprintf("HTTP %d", re.StatusCode)
	if re.ErrorCode != "" {
		msg += " " + re.ErrorCode
	}
	if re.StatusCode == http.StatusNotFound ||
		bloberror.HasCode(re, bloberror.BlobNotFound, bloberror.ContainerNotFound, bloberror.ResourceNotFound) {
		return &fetchError{url: u, msg: "blob not found (" + msg + ")", kind: ErrNotFound, cause: re}
	}
	if re.StatusCode == http.StatusForbidden || re.StatusCode == http.StatusUnauthorized {
		msg += " (the container may not allow anonymous read access)"
	}
	return &fetchError{url: u, msg: msg, cause: re}
}

func unreachable(u string, cause error) error {
	shown := cause
	var ue *url.Error // "Get \"<url>\": ...": the URL is already in the message
	if errors.As(cause, &ue) {
		shown = ue.Err
	}
	return &fetchError{
		url:   u,
		msg:   fmt.Sprintf("blob storage unreachable: %v; check the network, or set %s to a reachable endpoint", shown, EndpointEnv),
		kind:  ErrUnreachable,
		cause: cause,
	}
}

// isNetworkError reports failures to reach or keep talking to the service.
func isNetworkError(err error) bool {
	var (
		opErr   *net.OpError
		dnsErr  *net.DNSError
		netErr  net.Error
		certErr *tls.CertificateVerificationError
		recErr  tls.RecordHeaderError
		authErr x509.UnknownAuthorityError
		hostErr x509.HostnameError
		invErr  x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &opErr), errors.As(err, &dnsErr), errors.As(err, &certErr),
		errors.As(err, &recErr), errors.As(err, &authErr), errors.As(err, &hostErr), errors.As(err, &invErr):
		return true
	case errors.As(err, &netErr) && netErr.Timeout():
		return true
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, context.DeadlineExceeded):
		return true
	}
	return false
}
