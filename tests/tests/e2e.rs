//! End-to-end scenarios: one test binary, a module per area.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e {
    pub mod bindings;
    pub mod crash;
    pub mod device;
    pub mod faults;
}
