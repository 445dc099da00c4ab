// Package gloam is the Go SDK of Gloam, a microsecond-scale FaaS runtime.
//
// A Go program serves functions with [Serve]; handlers make internal calls with
// [Call.Invoke]. The package is a thin cgo layer over the C ABI (libgloam.a, built by
// `cargo build -p gloam-c`), which wraps Gloam's Rust core; it uses the standard library only.
//
// # Example
//
//	func foo(ctx context.Context, call *gloam.Call, input []byte) ([]byte, error) {
//		bar, err := call.Invoke(ctx, "Bar", input)
//		if err != nil {
//			return nil, err
//		}
//		return append([]byte("From function Bar: "), bar...), nil
//	}
//
//	func main() {
//		if err := gloam.Serve(map[string]gloam.Handler{"Foo": foo}); err != nil {
//			log.Fatal(err)
//		}
//	}
package gloam

/*
#cgo CFLAGS: -I${SRCDIR}/../c/include
#include <stdlib.h>
#include <time.h>
#include "gloam.h"

static uint64_t gloam_go_monotonic_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
*/
import "C"

import (
	"time"
	"unsafe"
)

// takeError converts a C status and error record into a Go error (nil for GLOAM_OK) and
// releases the record's message.
func takeError[S ~uint32 | ~int32](status S, cerr *C.gloam_error_t) error {
	if status == 0 {
		return nil
	}
	msg := ""
	if cerr.message != nil {
		msg = C.GoString(cerr.message)
	}
	C.gloam_error_free(cerr)
	return &Error{Code: Code(status), Message: msg}
}

// bytesPtr returns a pointer to b's first byte for the duration of a cgo call (nil if empty).
func bytesPtr(b []byte) *C.uint8_t {
	if len(b) == 0 {
		return nil
	}
	return (*C.uint8_t)(unsafe.Pointer(&b[0]))
}

// stringPtr returns a pointer to s's bytes for the duration of a cgo call (nil if empty):
// names are passed as pointer + length, without a C.CString copy.
func stringPtr(s string) *C.char {
	if len(s) == 0 {
		return nil
	}
	return (*C.char)(unsafe.Pointer(unsafe.StringData(s)))
}

// deadlineTime converts a CLOCK_MONOTONIC deadline (0 = none) into wall-clock time.
func deadlineTime(deadlineNs uint64) (time.Time, bool) {
	if deadlineNs == 0 {
		return time.Time{}, false
	}
	now := uint64(C.gloam_go_monotonic_ns())
	left := time.Duration(0)
	if deadlineNs > now {
		left = time.Duration(deadlineNs - now)
	}
	return time.Now().Add(left), true
}
