//! Unit tests of the state.
