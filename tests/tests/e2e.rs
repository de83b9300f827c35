//! End-to-end scenarios: one test binary, a module per area.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e {
    pub mod architecture;
    pub mod bindings;
    pub mod c_abi;
    pub mod crash;
    pub mod crash_points;
    pub mod device;
    pub mod faults;
    pub mod keys;
    pub mod loopback;
    pub mod many_packages;
    pub mod presets;
    pub mod proxy;
    pub mod ramp;
    pub mod real_apps;
    pub mod resume;
    pub mod rollout;
    pub mod scaled;
    pub mod shell;
    pub mod storage;
    pub mod watch;
}
