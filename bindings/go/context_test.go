package gloam

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestCallContextEndsAtTheDeadlineWithoutATimerUntilAsked(t *testing.T) {
	d := time.Now().Add(60 * time.Millisecond)
	ctx := &callContext{deadline: d, hasDL: true}
	defer ctx.stop()
	if got, ok := ctx.Deadline(); !ok || !got.Equal(d) {
		t.Fatalf("Deadline() = %v, %v", got, ok)
	}
	if ctx.Err() != nil || ctx.timer != nil {
		t.Fatalf("before the deadline: err %v, timer %v", ctx.Err(), ctx.timer)
	}
	// A derived context sees the parent's end.
	child, cancel := context.WithTimeout(ctx, time.Hour)
	defer cancel()
	select {
	case <-child.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the derived context did not end with the call's deadline")
	}
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) || !errors.Is(child.Err(), context.DeadlineExceeded) {
		t.Fatalf("after the deadline: %v, %v", ctx.Err(), child.Err())
	}
}

func TestCallContextWithoutDeadlineNeverEnds(t *testing.T) {
	ctx := &callContext{}
	if ctx.Done() != nil || ctx.Err() != nil {
		t.Fatal("a call without a deadline must give a context that never ends")
	}
	if _, ok := ctx.Deadline(); ok {
		t.Fatal("no deadline expected")
	}
}
