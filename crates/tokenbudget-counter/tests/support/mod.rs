//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod corpus;
#[cfg(feature = "claude")]
pub mod fake_api;
pub mod logs;
