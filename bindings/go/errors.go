package gloam

import "fmt"

// Code is the kind of a Gloam error: the same numbers as the core's ErrorKind and the C
// status codes (GLOAM_E_*).
type Code int

// The error codes.
const (
	CodeInvalidArgument  Code = 1
	CodeInvalidConfig    Code = 2
	CodeFunctionNotFound Code = 3
	CodePayloadTooLarge  Code = 4
	CodeHandlerFailed    Code = 5
	CodeWorkerCrashed    Code = 6
	CodeTimeout          Code = 7
	CodeOverloaded       Code = 8
	CodeProtocolError    Code = 9
	CodeShutdown         Code = 10
	CodeIO               Code = 11
	CodeInternal         Code = 12
	// CodeFunctionUnavailable: the called function has no worker and its workers cannot
	// start (missing command, exit before ready, no handler); the message gives the reason.
	CodeFunctionUnavailable Code = 13
)

var codeNames = map[Code]string{
	CodeInvalidArgument:     "INVALID_ARGUMENT",
	CodeInvalidConfig:       "INVALID_CONFIG",
	CodeFunctionNotFound:    "FUNCTION_NOT_FOUND",
	CodePayloadTooLarge:     "PAYLOAD_TOO_LARGE",
	CodeHandlerFailed:       "HANDLER_FAILED",
	CodeWorkerCrashed:       "WORKER_CRASHED",
	CodeTimeout:             "TIMEOUT",
	CodeOverloaded:          "OVERLOADED",
	CodeProtocolError:       "PROTOCOL_ERROR",
	CodeShutdown:            "SHUTDOWN",
	CodeIO:                  "IO",
	CodeInternal:            "INTERNAL",
	CodeFunctionUnavailable: "FUNCTION_UNAVAILABLE",
}

// String returns the stable upper-snake name of the code, e.g. "FUNCTION_NOT_FOUND".
func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("UNKNOWN(%d)", int(c))
}

// Error is an error reported by Gloam: a code and a message naming the function, field or
// file concerned. Compare with the sentinels using errors.Is:
//
//	if errors.Is(err, gloam.ErrFunctionNotFound) { ... }
type Error struct {
	// Code is the kind of error.
	Code Code
	// Message says what went wrong.
	Message string
	cause   error
}

// Error implements the error interface.
func (e *Error) Error() string {
	if e.Message == "" {
		return e.Code.String()
	}
	return e.Code.String() + ": " + e.Message
}

// Is reports whether target is a *Error with the same code (so errors.Is(err, ErrTimeout)
// works whatever the message).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Unwrap returns the underlying cause, e.g. context.DeadlineExceeded for a timeout that the
// caller's context enforced.
func (e *Error) Unwrap() error { return e.cause }

// Sentinel errors, one per code, for errors.Is.
var (
	ErrInvalidArgument  = &Error{Code: CodeInvalidArgument}
	ErrInvalidConfig    = &Error{Code: CodeInvalidConfig}
	ErrFunctionNotFound = &Error{Code: CodeFunctionNotFound}
	ErrPayloadTooLarge  = &Error{Code: CodePayloadTooLarge}
	ErrHandlerFailed    = &Error{Code: CodeHandlerFailed}
	ErrWorkerCrashed    = &Error{Code: CodeWorkerCrashed}
	ErrTimeout          = &Error{Code: CodeTimeout}
	ErrOverloaded       = &Error{Code: CodeOverloaded}
	ErrProtocolError    = &Error{Code: CodeProtocolError}
	ErrShutdown         = &Error{Code: CodeShutdown}
	ErrIO               = &Error{Code: CodeIO}
	ErrInternal         = &Error{Code: CodeInternal}
	// ErrFunctionUnavailable: the called function's workers cannot start (HTTP 503).
	ErrFunctionUnavailable = &Error{Code: CodeFunctionUnavailable}
)
