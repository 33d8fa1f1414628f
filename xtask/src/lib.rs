//! The pipeline stages behind `cargo xtask`, one module each; `main.rs` maps the command line onto them.

pub mod bench;
pub mod bootstrap;
pub mod build;
pub mod ci;
pub mod context;
pub mod docker;
pub mod healthcheck;
pub mod images;
pub mod launcher;
pub mod pip_tools;
pub mod registry;
pub mod release;
pub mod sbom;
pub mod scan;
pub mod sign;
pub mod stack;
pub mod test;
pub mod tools;
pub mod trivy_db;
pub mod verify;
