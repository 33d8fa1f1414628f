//! The commands of `cargo xtask`, one file each with its arguments beside it. A stage uses the plumbing of the
//! crate's top level (context, images, docker, tools, ...) and, where one stage runs another, its peer.

pub mod bench;
pub mod bootstrap;
pub mod build;
pub mod ci;
pub mod deploy;
pub mod deploy_kubernetes;
pub mod healthcheck;
pub mod lock;
pub mod mirror_db;
pub mod release;
pub mod reproduce;
pub mod rescan;
pub mod sbom;
pub mod scan;
pub mod test;
pub mod tools;
pub mod up;
pub mod verify;
