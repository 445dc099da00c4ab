// Command hello-go holds Gloam's Go example functions: Foo (calls Bar), Bar, Nop, Echo, Fail,
// Crash, Panic, Sleep, Fanout (three concurrent internal calls of Echo), InvokeOther (input
// "Target:payload" calls Target) and InvokeSize (input "Target:N" calls Target with N bytes
// and reports the outcome). The engine picks one with GLOAM_HANDLER / GLOAM_FUNCTION.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"gloam.dev/gloam"
)

func foo(ctx context.Context, call *gloam.Call, input []byte) ([]byte, error) {
	bar, err := call.Invoke(ctx, "Bar", input)
	if err != nil {
		return nil, err
	}
	return append([]byte("From function Bar: "), bar...), nil
}

func bar(_ context.Context, _ *gloam.Call, input []byte) ([]byte, error) {
	if len(input) == 0 {
		return []byte("Hello, World"), nil
	}
	return append([]byte("Hello, "), input...), nil
}

func nop(context.Context, *gloam.Call, []byte) ([]byte, error) { return nil, nil }

func echo(_ context.Context, _ *gloam.Call, input []byte) ([]byte, error) { return input, nil }

func fail(context.Context, *gloam.Call, []byte) ([]byte, error) {
	return nil, errors.New("Fail was called")
}

func crash(context.Context, *gloam.Call, []byte) ([]byte, error) {
	os.Exit(134) // like abort(): the process dies without answering
	return nil, nil
}

func panicky(context.Context, *gloam.Call, []byte) ([]byte, error) {
	panic("Panic was called")
}

func sleep(ctx context.Context, _ *gloam.Call, input []byte) ([]byte, error) {
	ms, err := strconv.Atoi(strings.TrimSpace(string(input)))
	if err != nil {
		return nil, fmt.Errorf("Sleep expects a number of milliseconds: %w", err)
	}
	time.Sleep(time.Duration(ms) * time.Millisecond)
	return []byte(fmt.Sprintf("slept %d ms", ms)), nil
}

func fanout(ctx context.Context, call *gloam.Call, input []byte) ([]byte, error) {
	outs := make([][]byte, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range outs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			outs[i], errs[i] = call.Invoke(ctx, "Echo", append(append([]byte{}, input...), byte('0'+i)))
		}(i)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return bytes.Join(outs, []byte(";")), nil
}

func splitTarget(input []byte) (string, []byte, error) {
	i := bytes.IndexByte(input, ':')
	if i < 0 {
		return "", nil, errors.New("expected Target:payload")
	}
	return string(input[:i]), input[i+1:], nil
}

func invokeOther(ctx context.Context, call *gloam.Call, input []byte) ([]byte, error) {
	target, payload, err := splitTarget(input)
	if err != nil {
		return nil, err
	}
	return call.Invoke(ctx, target, payload)
}

func invokeSize(ctx context.Context, call *gloam.Call, input []byte) ([]byte, error) {
	target, num, err := splitTarget(input)
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(string(num))
	if err != nil {
		return nil, err
	}
	out, err := call.Invoke(ctx, target, bytes.Repeat([]byte{'y'}, n))
	switch {
	case errors.Is(err, gloam.ErrPayloadTooLarge):
		return []byte("ErrPayloadTooLarge"), nil
	case err != nil:
		return nil, err
	}
	return []byte(strconv.Itoa(len(out))), nil
}

// invokeAbandon calls Sleep with the input under a 50 ms context and reports whether Invoke
// returned at the context's deadline (the internal call goes on and its result is dropped).
func invokeAbandon(ctx context.Context, call *gloam.Call, input []byte) ([]byte, error) {
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := call.Invoke(short, "Sleep", input)
	if errors.Is(err, gloam.ErrTimeout) && errors.Is(err, context.DeadlineExceeded) &&
		time.Since(start) < 900*time.Millisecond {
		return []byte("abandoned"), nil
	}
	return nil, fmt.Errorf("Invoke returned %v after %v", err, time.Since(start))
}

func main() {
	err := gloam.Serve(map[string]gloam.Handler{
		"Foo":           foo,
		"Bar":           bar,
		"Nop":           nop,
		"Echo":          echo,
		"Fail":          fail,
		"Crash":         crash,
		"Panic":         panicky,
		"Sleep":         sleep,
		"Fanout":        fanout,
		"InvokeOther":   invokeOther,
		"InvokeSize":    invokeSize,
		"InvokeAbandon": invokeAbandon,
	})
	if err != nil {
		log.Fatalf("hello-go: %v", err)
	}
}
