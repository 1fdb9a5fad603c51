//! WebRTC signaling over plain HTTP long-polling.
pub mod name;
pub mod store;
pub mod token;
