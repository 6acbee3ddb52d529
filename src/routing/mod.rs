//! The compiled, immutable routing table the engine reads on every new
//! connection and request, and the handle that publishes it atomically.

mod published;
mod runtime;
mod sticky_keys;
mod table;

pub use published::PublishedTable;
pub use runtime::{
    BackendRuntime, FrontendStats, Health, HealthChange, PoolRuntime, Runtimes, now_ms,
};
pub use sticky_keys::StickyKeys;
pub use table::{Backend, Frontend, Pool, Route, RoutingTable};
