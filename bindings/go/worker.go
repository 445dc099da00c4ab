package gloam

/*
#include <stdlib.h>
#include "gloam.h"
*/
import "C"

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"time"
	"unsafe"
)

// Worker is one logical worker connected to the engine, for programs that drive the receive
// loop themselves (most programs use [Serve]).
//
// One goroutine at a time calls [Worker.Recv]; calls may be completed or failed from any
// goroutine, and any number of goroutines may make internal calls. Close it when done.
type Worker struct {
	mu       sync.RWMutex // guards ptr against Close while other methods run
	ptr      *C.gloam_worker_t
	invokes  sync.WaitGroup
	function string
	handler  string
}

// NewWorker connects a worker configured by the environment the engine's launcher sets
// (GLOAM_FUNCTION, GLOAM_HANDLER, GLOAM_IPC_ROOT).
func NewWorker() (*Worker, error) {
	var cerr C.gloam_error_t
	var ptr *C.gloam_worker_t
	lang := C.CString("go")
	defer C.free(unsafe.Pointer(lang))
	if err := takeError(C.gloam_worker_new_from_env(lang, &ptr, &cerr), &cerr); err != nil {
		return nil, err
	}
	return &Worker{
		ptr:      ptr,
		function: C.GoString(C.gloam_worker_function(ptr)),
		handler:  C.GoString(C.gloam_worker_handler(ptr)),
	}, nil
}

// Function returns the name of the function this worker serves.
func (w *Worker) Function() string { return w.function }

// Handler returns the name of the handler this worker should run (GLOAM_HANDLER, default the
// function's name).
func (w *Worker) Handler() string { return w.handler }

// Recv waits for the next call. It returns an error matching [ErrShutdown] when the engine
// retired the worker, the engine went away or the worker was closed; (nil, nil) after
// [Worker.Wake].
func (w *Worker) Recv() (*Call, error) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.ptr == nil {
		return nil, &Error{Code: CodeShutdown, Message: "worker closed"}
	}
	var cerr C.gloam_error_t
	var c *C.gloam_call_t
	if err := takeError(C.gloam_worker_recv(w.ptr, &c, &cerr), &cerr); err != nil {
		return nil, err
	}
	if c == nil {
		return nil, nil
	}
	var data *C.uint8_t
	var n C.size_t
	C.gloam_call_input(c, &data, &n)
	call := &Call{
		w:          w,
		ptr:        c,
		id:         uint64(C.gloam_call_id(c)),
		deadlineNs: uint64(C.gloam_call_deadline_ns(c)),
	}
	if n > 0 {
		call.input = C.GoBytes(unsafe.Pointer(data), C.int(n))
	} else {
		call.input = []byte{}
	}
	var mdata *C.uint8_t
	var mn C.size_t
	if C.gloam_call_method(c, &mdata, &mn) == C.GLOAM_OK && mn > 0 {
		call.method = C.GoStringN((*C.char)(unsafe.Pointer(mdata)), C.int(mn))
	}
	return call, nil
}

// Wake makes a waiting [Worker.Recv] return (nil, nil). Safe from any goroutine.
func (w *Worker) Wake() {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.ptr != nil {
		C.gloam_worker_wake(w.ptr)
	}
}

// Complete answers call with output. An output over the payload limit fails the call with
// [ErrPayloadTooLarge] instead, which is also returned.
func (w *Worker) Complete(call *Call, output []byte) error {
	c, err := call.take()
	if err != nil {
		return err
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	var cerr C.gloam_error_t
	status := C.gloam_worker_complete(w.ptr, c, bytesPtr(output), C.size_t(len(output)), &cerr)
	runtime.KeepAlive(output)
	return takeError(status, &cerr)
}

// Fail answers call with a failure: the caller sees HANDLER_FAILED with message. To pass an
// error on with its kind, use [Worker.FailWith].
func (w *Worker) Fail(call *Call, message string) error {
	c, err := call.take()
	if err != nil {
		return err
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	var cerr C.gloam_error_t
	status := C.gloam_worker_fail(w.ptr, c, stringPtr(message), C.size_t(len(message)), &cerr)
	runtime.KeepAlive(message)
	return takeError(status, &cerr)
}

// FailWith answers call with the failure err, passing its kind on: the code of the [*Error]
// in err's chain (errors.As) when that code is the outcome of a call (see [Handler]), else
// HANDLER_FAILED. The message is the *Error's own when err is one, else err's whole text.
func (w *Worker) FailWith(call *Call, err error) error {
	code, message := failureOf(err)
	c, terr := call.take()
	if terr != nil {
		return terr
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	var cerr C.gloam_error_t
	status := C.gloam_worker_fail_with_status(w.ptr, c, C.int(code), stringPtr(message),
		C.size_t(len(message)), &cerr)
	runtime.KeepAlive(message)
	return takeError(status, &cerr)
}

// failureOf is the code and message a call fails with when its handler returns err (the C
// library keeps the code only when it may pass on).
func failureOf(err error) (Code, string) {
	if err == nil {
		return CodeHandlerFailed, "failed with a nil error"
	}
	var ge *Error
	if !errors.As(err, &ge) {
		return CodeHandlerFailed, err.Error()
	}
	if direct, ok := err.(*Error); ok && direct == ge && ge.Message != "" {
		return ge.Code, ge.Message
	}
	return ge.Code, err.Error()
}

// Close disconnects the worker: a waiting Recv and pending internal calls return
// [ErrShutdown], then the worker is freed. Calls not answered yet are failed by the engine.
// Close is idempotent.
func (w *Worker) Close() error {
	w.mu.RLock()
	if w.ptr != nil {
		C.gloam_worker_close(w.ptr)
	}
	w.mu.RUnlock()
	// Internal calls abandoned by their context still run in C: wait for them to see the close.
	w.invokes.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ptr != nil {
		C.gloam_worker_free(w.ptr)
		w.ptr = nil
	}
	return nil
}

// Call is a call being run: its input, deadline and the means to make internal calls.
type Call struct {
	w          *Worker
	mu         sync.Mutex
	ptr        *C.gloam_call_t
	id         uint64
	deadlineNs uint64
	input      []byte
	method     string
	// The context Serve gives the handler (nil with Recv): Invoke with it needs no watcher.
	ctx *callContext
}

// Input returns the call's input (a Go copy, safe to keep).
func (c *Call) Input() []byte { return c.input }

// ID returns the call's id, unique among calls in flight. An asynchronous call keeps its id
// when it runs again after an engine restart, so a handler can deduplicate on it.
func (c *Call) ID() uint64 { return c.id }

// Method returns the name of the gRPC method the call is for ("SayHello" for
// /demo.Greeter/SayHello served by function grpc:demo.Greeter), or "" for a plain
// function's call. The request is the method's raw protobuf message: unmarshal it with your
// own generated code (see examples/grpc/go).
func (c *Call) Method() string { return c.method }

// Deadline returns the call's deadline, if it has one.
func (c *Call) Deadline() (time.Time, bool) { return deadlineTime(c.deadlineNs) }

// take hands the C call over to complete/fail, once.
func (c *Call) take() (*C.gloam_call_t, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ptr == nil {
		return nil, &Error{Code: CodeInvalidArgument, Message: "call was already answered"}
	}
	p := c.ptr
	c.ptr = nil
	return p, nil
}

// Invoke calls function name with input through the engine (an internal call) and returns
// its output. The internal call inherits the call's deadline. Any number of goroutines may
// invoke at once.
//
// When ctx ends first, Invoke returns at once: an error matching [ErrTimeout] and
// context.DeadlineExceeded for a deadline, ctx.Err() for a cancellation. The internal call
// still runs to its end in the background and its result is dropped. With the handler's own
// context (which ends exactly at the call's deadline, enforced by the core too) or a context
// that never ends, the call runs on the calling goroutine, without a watcher.
func (c *Call) Invoke(ctx context.Context, name string, input []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, contextError(err)
	}
	w := c.w
	w.mu.RLock()
	if w.ptr == nil {
		w.mu.RUnlock()
		return nil, &Error{Code: CodeShutdown, Message: "worker closed"}
	}
	w.invokes.Add(1)
	w.mu.RUnlock()
	// The handler's own context ends exactly at the call's deadline, which the core enforces
	// for the internal call too, and a context without Done never ends: call the core on this
	// goroutine, with no watcher goroutine or channel (a few µs per call).
	if cc, ok := ctx.(*callContext); (ok && cc == c.ctx) || ctx.Done() == nil {
		defer w.invokes.Done()
		out, err := c.invokeBlocking(name, input)
		if err != nil && ctx.Err() != nil {
			return nil, contextError(ctx.Err())
		}
		return out, err
	}
	type result struct {
		out []byte
		err error
	}
	done := make(chan result, 1) // buffered: an abandoned invoke must not block
	go func() {
		defer w.invokes.Done()
		out, err := c.invokeBlocking(name, input)
		done <- result{out, err}
	}()
	select {
	case r := <-done:
		return r.out, r.err
	case <-ctx.Done():
		return nil, contextError(ctx.Err())
	}
}

func (c *Call) invokeBlocking(name string, input []byte) ([]byte, error) {
	w := c.w
	w.mu.RLock()
	defer w.mu.RUnlock()
	var cerr C.gloam_error_t
	var out C.gloam_buffer_t
	// By value (id + deadline), so the call may be answered while this still runs.
	status := C.gloam_worker_invoke_with_parent(w.ptr, C.uint64_t(c.id), C.uint64_t(c.deadlineNs),
		stringPtr(name), C.size_t(len(name)), bytesPtr(input), C.size_t(len(input)), &out, &cerr)
	runtime.KeepAlive(name)
	runtime.KeepAlive(input)
	if err := takeError(status, &cerr); err != nil {
		return nil, err
	}
	res := []byte{}
	if out.len > 0 {
		res = C.GoBytes(unsafe.Pointer(out.data), C.int(out.len))
	}
	C.gloam_buffer_free(&out)
	return res, nil
}

func contextError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return &Error{Code: CodeTimeout, Message: "the context's deadline passed", cause: err}
	}
	return err
}
