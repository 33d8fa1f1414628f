//! The pipeline behind `cargo xtask`: the stages under `stages/`, and the plumbing they share at this level.
//! `main.rs` maps the command line onto the stages; docs/architecture.md draws the map.

pub mod stages;

// The workspace, read once per command.
pub mod context;
pub mod files;
pub mod images;
pub mod out;
pub mod revision;

// Running things.
pub mod docker;
pub mod process;
pub mod running;
pub mod stack;
pub mod stamp;

// What the build is made from and with.
pub mod assemble;
pub mod built;
pub mod debian;
pub mod debian_base;
pub mod image_diff;
pub mod oci;
pub mod pinned_tools;
pub mod platform;
pub mod staging;
pub mod static_launcher;
pub mod wheels;

// Supply chain.
pub mod cosign;
pub mod index_sbom;
pub mod kubernetes;
pub mod policy;
pub mod provenance;
pub mod registry;
pub mod signing;
pub mod trivy;
pub mod trivy_db;
pub mod vex;
