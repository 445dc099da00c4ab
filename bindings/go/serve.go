package gloam

/*
#include "gloam.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"
)

// debugMode is GLOAM_DEBUG=1 (a function with `debug = true`): a panicking handler's stack
// goes into the error message its caller gets, not only into the worker's log.
var debugMode = os.Getenv("GLOAM_DEBUG") == "1"

// handlerName is the handler GLOAM_HANDLER or else GLOAM_FUNCTION names ("" when neither is
// set: NewWorker then says what is missing).
func handlerName() string {
	if h := os.Getenv("GLOAM_HANDLER"); h != "" {
		return h
	}
	return os.Getenv("GLOAM_FUNCTION")
}

func noHandler(name string, handlers map[string]Handler) error {
	names := make([]string, 0, len(handlers))
	for n := range handlers {
		names = append(names, n)
	}
	sort.Strings(names)
	return &Error{Code: CodeInvalidConfig, Message: fmt.Sprintf(
		"this program has no handler %q (it has: %s)", name, strings.Join(names, ", "))}
}

// Handler runs one call: it gets the call's input and returns its output, or an error that
// fails the call (the caller sees HANDLER_FAILED with the error's text). ctx carries the
// call's deadline. A panic fails the call the same way; the process lives on. Either way the
// failure goes to the worker's log (stderr, which `gloam up` shows): a panic with its stack,
// an error formatted with %+v (errors that record a stack print it so).
//
// Passing an error on keeps its kind: when the returned error is, or wraps (errors.As), an
// [*Error] — such as what [Call.Invoke] returned — the call fails with its code, if that code
// is the outcome of a call: [ErrFunctionNotFound], [ErrPayloadTooLarge], [ErrHandlerFailed],
// [ErrWorkerCrashed], [ErrTimeout], [ErrOverloaded] or [ErrShutdown]. So
//
//	out, err := call.Invoke(ctx, "Slow", input)
//	if err != nil {
//		return nil, err // a TIMEOUT of Slow: this call's caller sees TIMEOUT (HTTP 504)
//	}
//
// The other codes describe this process (a bad argument, the link to the engine, ...) and
// still give HANDLER_FAILED. The message is the *Error's own when it is returned as is, the
// whole text of the error when it is wrapped.
type Handler func(ctx context.Context, call *Call, input []byte) ([]byte, error)

// Serve serves the function named by GLOAM_FUNCTION with the handler named by GLOAM_HANDLER
// (default: the function's name) on GLOAM_WORKERS logical workers, one goroutine each, until
// the engine retires them or goes away. It returns nil after a clean shutdown. A missing
// handler is reported before connecting, so the engine sees the process fail to start.
func Serve(handlers map[string]Handler) error {
	var cerr C.gloam_error_t
	var n C.size_t
	if err := takeError(C.gloam_workers_from_env(&n, &cerr), &cerr); err != nil {
		return err
	}
	if name := handlerName(); name != "" {
		if _, ok := handlers[name]; !ok {
			return noHandler(name, handlers)
		}
	}
	first, err := NewWorker()
	if err != nil {
		return err
	}
	h, ok := handlers[first.Handler()]
	if !ok {
		first.Close()
		return noHandler(first.Handler(), handlers)
	}
	errs := make([]error, int(n))
	var wg sync.WaitGroup
	for i := 0; i < int(n); i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			w := first
			if i > 0 {
				var err error
				if w, err = NewWorker(); err != nil {
					errs[i] = err
					return
				}
			}
			errs[i] = w.Serve(h)
		}(i)
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Serve runs h for every call the worker receives until shutdown, then closes the worker.
// It returns nil after a clean shutdown.
func (w *Worker) Serve(h Handler) error {
	defer w.Close()
	for {
		call, err := w.Recv()
		if errors.Is(err, ErrShutdown) {
			return nil
		}
		if errors.Is(err, ErrProtocolError) {
			return err
		}
		if err != nil || call == nil {
			continue
		}
		out, herr := runHandler(w.Handler(), h, call)
		if herr != nil {
			err = w.FailWith(call, herr)
		} else {
			err = w.Complete(call, out)
		}
		if errors.Is(err, ErrShutdown) {
			return nil
		}
	}
}

func runHandler(name string, h Handler, call *Call) (out []byte, err error) {
	ctx := newCallContext(call)
	call.ctx = ctx
	defer ctx.stop()
	defer func() {
		if p := recover(); p != nil {
			stack := debug.Stack()
			fmt.Fprintf(os.Stderr, "gloam: handler %s panicked on call %d: %v\n%s", name, call.ID(), p, stack)
			message := fmt.Sprintf("handler panicked: %v", p)
			if debugMode {
				message += "\n" + string(stack)
			}
			out, err = nil, errors.New(message)
		}
	}()
	out, err = h(ctx, call, call.Input())
	if err != nil {
		fmt.Fprintf(os.Stderr, "gloam: handler %s failed call %d: %+v\n", name, call.ID(), err)
	}
	return out, err
}

// callContext is the context a handler gets: done at the call's deadline. It starts a timer
// only when something waits on Done (most handlers never do), and Call.Invoke given this very
// context calls the core directly, which enforces the same deadline itself.
type callContext struct {
	deadline time.Time
	hasDL    bool
	once     sync.Once
	done     chan struct{}
	timer    *time.Timer
	mu       sync.Mutex
}

func newCallContext(call *Call) *callContext {
	d, ok := call.Deadline()
	return &callContext{deadline: d, hasDL: ok}
}

func (c *callContext) Deadline() (time.Time, bool) { return c.deadline, c.hasDL }

func (c *callContext) Done() <-chan struct{} {
	if !c.hasDL {
		return nil
	}
	c.once.Do(func() {
		c.done = make(chan struct{})
		left := time.Until(c.deadline)
		if left <= 0 {
			close(c.done)
			return
		}
		c.mu.Lock()
		c.timer = time.AfterFunc(left, func() { close(c.done) })
		c.mu.Unlock()
	})
	return c.done
}

func (c *callContext) Err() error {
	if !c.hasDL {
		return nil
	}
	if c.done != nil {
		select {
		case <-c.done:
			return context.DeadlineExceeded
		default:
			return nil
		}
	}
	if time.Now().Before(c.deadline) {
		return nil
	}
	return context.DeadlineExceeded
}

func (c *callContext) Value(any) any { return nil }

// stop releases the timer, if one was started, once the handler has returned.
func (c *callContext) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer != nil {
		c.timer.Stop()
	}
}
