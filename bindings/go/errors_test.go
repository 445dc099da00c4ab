package gloam

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestErrorsIs(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", &Error{Code: CodeFunctionNotFound, Message: "function not found: X"})
	if !errors.Is(err, ErrFunctionNotFound) {
		t.Fatal("errors.Is(ErrFunctionNotFound) is false")
	}
	if errors.Is(err, ErrTimeout) {
		t.Fatal("errors.Is(ErrTimeout) is true")
	}
	var ge *Error
	if !errors.As(err, &ge) || ge.Code != CodeFunctionNotFound || ge.Code.String() != "FUNCTION_NOT_FOUND" {
		t.Fatalf("errors.As: %#v", ge)
	}
	timeout := contextError(context.DeadlineExceeded)
	if !errors.Is(timeout, ErrTimeout) || !errors.Is(timeout, context.DeadlineExceeded) {
		t.Fatalf("context timeout %v is not both ErrTimeout and DeadlineExceeded", timeout)
	}
	if CodeFunctionUnavailable != 13 || CodeFunctionUnavailable.String() != "FUNCTION_UNAVAILABLE" ||
		!errors.Is(&Error{Code: 13, Message: "function Foo has no worker"}, ErrFunctionUnavailable) {
		t.Fatal("FUNCTION_UNAVAILABLE is not code 13")
	}
	if Code(99).String() != "UNKNOWN(99)" {
		t.Fatal(Code(99).String())
	}
}

func TestNewWorkerWithoutEngine(t *testing.T) {
	t.Setenv("GLOAM_FUNCTION", "")
	_, err := NewWorker()
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("NewWorker without GLOAM_FUNCTION: %v", err)
	}
}

func TestFailureOfPassesTheCodeOn(t *testing.T) {
	inner := &Error{Code: CodeTimeout, Message: "timeout: call to Slow did not finish"}
	for _, c := range []struct {
		err  error
		code Code
		msg  string
	}{
		{inner, CodeTimeout, "timeout: call to Slow did not finish"},
		{fmt.Errorf("PassOn: %w", inner), CodeTimeout, "PassOn: TIMEOUT: timeout: call to Slow did not finish"},
		{errors.Join(errors.New("first"), inner), CodeTimeout, "first\nTIMEOUT: timeout: call to Slow did not finish"},
		{ErrWorkerCrashed, CodeWorkerCrashed, "WORKER_CRASHED"},
		{errors.New("plain"), CodeHandlerFailed, "plain"},
		{context.DeadlineExceeded, CodeHandlerFailed, "context deadline exceeded"},
		{nil, CodeHandlerFailed, "failed with a nil error"},
	} {
		code, msg := failureOf(c.err)
		if code != c.code || msg != c.msg {
			t.Errorf("failureOf(%v) = %v, %q; want %v, %q", c.err, code, msg, c.code, c.msg)
		}
	}
}
