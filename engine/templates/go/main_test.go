package main

import "testing"

func TestGreet(t *testing.T) {
	for in, want := range map[string]string{"Ada": "Hello, Ada!", "": "Hello, World!"} {
		got, err := greet([]byte(in))
		if err != nil || string(got) != want {
			t.Errorf("greet(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
