//! What the integration tests share. Each test binary includes this module and uses a part of it.
#![allow(dead_code)]

pub mod evidence;
pub mod fixture;
pub mod keys;
pub mod kube;
pub mod layout;
pub mod registry;
pub mod shop;

use xtask::context::Context;

/// The value, or `None` after printing why the test is skipped; under CI (`CI=true` or `CI=1`) a missing
/// prerequisite fails the test instead, loudly.
pub fn require<T>(what: &str, result: anyhow::Result<T>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(error) if Context::in_ci() => panic!("{what} is required under CI: {error:#}"),
        Err(error) => {
            eprintln!("SKIPPED: {what} is not available here: {error:#}");
            None
        }
    }
}
