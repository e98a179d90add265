//! Shared helpers for the cross-crate tests in `tests/tests/`. The crate has no tests of its
//! own yet: they arrive with the runtime, storage, transport and the counter example.
