// Command hello-go holds Gloam's Go example functions: Foo (calls Bar), Bar, Nop, Echo, Fail,
// Crash, Panic, Sleep, Fanout (three concurrent internal calls of Echo), InvokeOther (input
// "Target:payload" calls Target), PassOn (the same, returning a failure unchanged so that the
// call keeps its kind) and InvokeSize (input "Target:N" calls Target with N bytes
// and reports the outcome), InvokeAbandon and BenchInternal (input "N" or "Target:N": N timed
// internal calls, the distribution as JSON). The engine picks one with GLOAM_HANDLER /
// GLOAM_FUNCTION.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"math"
	"os"
	"slices"
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

// method answers the gRPC method the call is for ("" for a plain function).
func method(_ context.Context, call *gloam.Call, _ []byte) ([]byte, error) {
	return []byte(call.Method()), nil
}

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

// passOn calls Target with payload (input "Target:payload") and returns its error unchanged:
// the call fails with the callee's kind (a callee's TIMEOUT is HTTP 504 here, a crash 502).
func passOn(ctx context.Context, call *gloam.Call, input []byte) ([]byte, error) {
	target, payload, err := splitTarget(input)
	if err != nil {
		return nil, err
	}
	out, err := call.Invoke(ctx, target, payload)
	if err != nil {
		return nil, err
	}
	return out, nil
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

// benchInternal takes "N" or "Target:N" (default 10000 calls to Nop): it makes N/10 (at most
// 1000) unmeasured internal calls, then N sequential ones timed here with time.Now/time.Since,
// and answers {"target","count","p50_us","p90_us","p99_us","p999_us","max_us","mean_us","per_s"}
// like the Rust BenchInternal (nearest-rank percentiles).
func benchInternal(ctx context.Context, call *gloam.Call, input []byte) ([]byte, error) {
	text := strings.TrimSpace(string(input))
	target, num := "Nop", text
	if i := strings.LastIndexByte(text, ':'); i >= 0 {
		target, num = text[:i], text[i+1:]
	}
	n := 10000
	if num != "" {
		v, err := strconv.ParseUint(num, 10, 63)
		if err != nil {
			return nil, fmt.Errorf("BenchInternal: N: %w", err)
		}
		n = int(v)
	}
	if n == 0 {
		return nil, errors.New("BenchInternal: N must be at least 1")
	}
	for i := 0; i < min(n/10, 1000); i++ {
		if _, err := call.Invoke(ctx, target, nil); err != nil {
			return nil, err
		}
	}
	ns := make([]int64, n)
	start := time.Now()
	for i := range ns {
		t0 := time.Now()
		_, err := call.Invoke(ctx, target, nil)
		ns[i] = int64(time.Since(t0))
		if err != nil {
			return nil, err
		}
	}
	total := time.Since(start).Seconds()
	slices.Sort(ns)
	at := func(q float64) float64 {
		rank := int(math.Ceil(q * float64(n)))
		return float64(ns[max(1, min(rank, n))-1]) / 1e3
	}
	var sum float64
	for _, x := range ns {
		sum += float64(x)
	}
	return []byte(fmt.Sprintf(`{"target":"%s","count":%d,"p50_us":%.2f,"p90_us":%.2f,`+
		`"p99_us":%.2f,"p999_us":%.2f,"max_us":%.2f,"mean_us":%.2f,"per_s":%.0f}`,
		target, n, at(0.5), at(0.9), at(0.99), at(0.999), at(1), sum/float64(n)/1e3,
		float64(n)/total)), nil
}

func main() {
	err := gloam.Serve(map[string]gloam.Handler{
		"Foo":           foo,
		"Bar":           bar,
		"Nop":           nop,
		"Method":        method,
		"Echo":          echo,
		"Fail":          fail,
		"Crash":         crash,
		"Panic":         panicky,
		"Sleep":         sleep,
		"Fanout":        fanout,
		"InvokeOther":   invokeOther,
		"PassOn":        passOn,
		"InvokeSize":    invokeSize,
		"InvokeAbandon": invokeAbandon,
		"BenchInternal": benchInternal,
	})
	if err != nil {
		log.Fatalf("hello-go: %v", err)
	}
}
