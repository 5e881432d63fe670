//! shipit's Railway platform (docs to come).
pub mod client;
pub mod config;
pub mod error;
pub mod platform;
pub mod render;
mod rollout;
mod scope;

pub use client::RailwayClient;
pub use config::{RailwayConfig, RailwayToken};
pub use error::RailwayError;
pub use platform::RailwayPlatform;
pub use render::render;
