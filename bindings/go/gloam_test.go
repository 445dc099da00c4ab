package gloam_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const limit = 16 << 20 // the engine's default max_payload

func TestEcho(t *testing.T) {
	expectOK(t, "Echo", []byte("hello gloam"), "hello gloam")
}

func TestEmptyInput(t *testing.T) {
	expectOK(t, "Echo", nil, "")
	expectOK(t, "Nop", []byte("ignored"), "")
	expectOK(t, "Bar", nil, "Hello, World")
}

func TestInlineEdge960And961(t *testing.T) {
	for _, n := range []int{959, 960, 961} {
		body := bytes.Repeat([]byte{'e'}, n)
		expectOK(t, "Echo", body, string(body))
		expectOK(t, "InvokeSize", []byte(fmt.Sprintf("Echo:%d", n)), fmt.Sprint(n))
	}
}

func TestShmPayload2MiB(t *testing.T) {
	body := make([]byte, 2<<20)
	rand.Read(body)
	expectOK(t, "Echo", body, string(body))
	expectOK(t, "InvokeSize", []byte(fmt.Sprintf("Echo:%d", 2<<20)), fmt.Sprint(2<<20))
}

func TestOversize(t *testing.T) {
	expectOK(t, "InvokeSize", []byte(fmt.Sprintf("Echo:%d", limit+1)), "ErrPayloadTooLarge")
	expectErr(t, callRaw(t, "Echo", bytes.Repeat([]byte{'z'}, limit+1)), 413, "PAYLOAD_TOO_LARGE")
	expectOK(t, "Echo", []byte("after"), "after")
}

func TestHandlerError(t *testing.T) {
	r := call(t, "Fail", []byte("x"))
	expectErr(t, r, 500, "HANDLER_FAILED")
	if r.msg != "Fail was called" {
		t.Fatalf("message %q", r.msg)
	}
	r = call(t, "Panic", nil)
	expectErr(t, r, 500, "HANDLER_FAILED")
	if !strings.Contains(r.msg, "Panic was called") {
		t.Fatalf("panic message %q", r.msg)
	}
	expectOK(t, "Echo", []byte("next"), "next")
	r = call(t, "InvokeOther", []byte("Fail:x"))
	expectErr(t, r, 500, "HANDLER_FAILED")
	if !strings.Contains(r.msg, "Fail was called") {
		t.Fatalf("internal failure message %q", r.msg)
	}
}

func TestInternalCall(t *testing.T) {
	expectOK(t, "Foo", []byte("Gloam"), "From function Bar: Hello, Gloam")
	expectOK(t, "InvokeOther", []byte("Echo:ping"), "ping")
	if _, err := os.Stat(filepath.Join("..", "..", "target", "debug", "hello-rust")); err != nil {
		t.Fatalf("target/debug/hello-rust is missing (bindings/go/test.sh builds it): %v", err)
	}
	expectOK(t, "InvokeOther", []byte("RustEcho:ping rust"), "ping rust")
}

func TestConcurrentInternalCalls(t *testing.T) {
	expectOK(t, "Fanout", []byte("x"), "x0;x1;x2")
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			in := fmt.Sprintf("p%d-", i)
			r := call(t, "Fanout", []byte(in))
			if want := in + "0;" + in + "1;" + in + "2"; r.status != 200 || string(r.body) != want {
				t.Errorf("Fanout(%s): %d %q", in, r.status, r.body)
			}
		}(i)
	}
	wg.Wait()
}

func TestUnknownFunction(t *testing.T) {
	r := call(t, "NoSuchFunction", []byte("x"))
	expectErr(t, r, 404, "FUNCTION_NOT_FOUND")
	if !strings.Contains(r.msg, "NoSuchFunction") {
		t.Fatalf("message %q does not name the function", r.msg)
	}
	// From inside a handler: InvokeOther returns Invoke's error, which keeps its kind.
	r = call(t, "InvokeOther", []byte("NoSuchFunction:x"))
	expectErr(t, r, 404, "FUNCTION_NOT_FOUND")
	if !strings.Contains(r.msg, "NoSuchFunction") {
		t.Fatalf("internal call message %q", r.msg)
	}
}

func TestWorkerCrash(t *testing.T) {
	expectErr(t, call(t, "Crash", nil), 502, "WORKER_CRASHED")
	deadline := time.Now().Add(30 * time.Second)
	for status(t)["Crash"] < 1 {
		if time.Now().After(deadline) {
			t.Fatal("Crash has no idle worker 30 s after the crash")
		}
		time.Sleep(50 * time.Millisecond)
	}
	expectErr(t, call(t, "Crash", nil), 502, "WORKER_CRASHED")
	expectOK(t, "Echo", []byte("alive"), "alive")
}

func TestDeadline(t *testing.T) {
	expectErr(t, call(t, "Sleep", []byte("1000"), "X-Gloam-Timeout", "200"), 504, "TIMEOUT")
	// The internal call inherits the deadline; the Go context enforces it too.
	r := call(t, "InvokeOther", []byte("Sleep:1000"), "X-Gloam-Timeout", "300")
	if r.status != 504 && !strings.Contains(r.msg, "TIMEOUT") {
		t.Fatalf("nested: %d %q", r.status, r.body)
	}
	expectOK(t, "Sleep", []byte("10"), "slept 10 ms")
}

func TestContextAbandonsInvoke(t *testing.T) {
	expectOK(t, "InvokeAbandon", []byte("1000"), "abandoned")
	expectOK(t, "InvokeAbandon", []byte("1000"), "abandoned") // the worker lives on
}

func TestPassedOnKind(t *testing.T) {
	// SleepShort's own timeout (200 ms) expires long before PassOn's: PassOn returns the
	// TIMEOUT error of Invoke unchanged and its caller sees TIMEOUT.
	r := call(t, "PassOn", []byte("SleepShort:2000"))
	expectErr(t, r, 504, "TIMEOUT")
	if !strings.Contains(r.msg, "SleepShort") || strings.HasPrefix(r.msg, "timeout: ") {
		t.Fatalf("passed-on timeout message %q", r.msg)
	}
	expectErr(t, call(t, "PassOn", []byte("Crash:x")), 502, "WORKER_CRASHED")
	expectErr(t, call(t, "PassOn", []byte("NoSuchFunction:x")), 404, "FUNCTION_NOT_FOUND")
	// A plain handler error, passed on, stays HANDLER_FAILED with its message.
	r = call(t, "PassOn", []byte("Fail:x"))
	expectErr(t, r, 500, "HANDLER_FAILED")
	if r.msg != "Fail was called" {
		t.Fatalf("passed-on failure message %q", r.msg)
	}
	expectErr(t, call(t, "PassOn", []byte("no target")), 500, "HANDLER_FAILED")
	for _, fn := range []string{"Crash", "SleepShort"} {
		deadline := time.Now().Add(30 * time.Second)
		for status(t)[fn] < 1 {
			if time.Now().After(deadline) {
				t.Fatalf("%s has no idle worker 30 s later", fn)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// TestMethodName: the gRPC method reaches the handler as call.Method().
func TestMethodName(t *testing.T) {
	if r := call(t, "grpc:conformance.Methods", nil, "X-Gloam-Method", "Second"); r.status != 200 || string(r.body) != "Second" {
		t.Fatalf("Second: %d %q", r.status, r.body)
	}
	expectOK(t, "grpc:conformance.Methods", nil, "First")
	expectOK(t, "Method", nil, "")
}
