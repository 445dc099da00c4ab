//! Model-based tests of the state (see below).
