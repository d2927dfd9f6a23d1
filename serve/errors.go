package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/sae"
)

// Errors callers and tests branch on.
var (
	ErrNoModel      = errors.New("serve: no model given")
	ErrBadRequest   = errors.New("bad request")
	ErrNotFound     = errors.New("not found")
	ErrTooLarge     = errors.New("request over a limit")
	ErrBusy         = errors.New("server busy")
	ErrShuttingDown = errors.New("server is shutting down")
)

// statusClientClosed is logged for a request whose client went away (as
// nginx does); nothing reaches the client.
const statusClientClosed = 499

// apiError is an error with the status code it is answered with.
type apiError struct {
	status int
	err    error
}

func (e *apiError) Error() string { return e.err.Error() }
func (e *apiError) Unwrap() error { return e.err }

func errorf(status int, format string, args ...any) error {
	return &apiError{status: status, err: fmt.Errorf(format, args...)}
}

// badRequest marks err as the client's fault (400).
func badRequest(err error) error {
	if err == nil {
		return nil
	}
	return &apiError{status: http.StatusBadRequest, err: err}
}

// statusOf maps an error to its status code: the code an apiError carries,
// else what the error wraps.
func statusOf(err error) int {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae.status
	case errors.Is(err, hooks.ErrHookFailed), errors.Is(err, hooks.ErrHookShape), errors.Is(err, hooks.ErrHookPanic):
		return http.StatusUnprocessableEntity
	case errors.Is(err, ErrBadRequest),
		errors.Is(err, modelctx.ErrTokenOutOfRange), errors.Is(err, modelctx.ErrTooLong),
		errors.Is(err, modelctx.ErrEmptyBatch), errors.Is(err, modelctx.ErrRagged),
		errors.Is(err, modelctx.ErrNoTokenizer), errors.Is(err, modelctx.ErrNoPoint),
		errors.Is(err, sae.ErrShape), errors.Is(err, modelctx.ErrBadSampleOption),
		errors.Is(err, modelctx.ErrNotCausalLM):
		return http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrBusy), errors.Is(err, ErrShuttingDown):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

func isCancel(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// writeError answers {"error": message} with err's status code.
func writeError(w http.ResponseWriter, err error) {
	writeJSON(w, statusOf(err), map[string]string{"error": err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v) // a failed write means the client is gone
}
