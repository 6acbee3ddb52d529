//! The compiled, immutable routing table the engine reads on every new
//! connection and request, and the handle that publishes it atomically.

mod header_view;
pub mod path;
mod pool;
mod published;
mod rate_limit;
mod route_match;
mod runtime;
mod sticky_keys;
mod table;

pub use header_view::HeaderView;
pub use pool::{Backend, Pool};
pub use published::PublishedTable;
pub use rate_limit::RateLimiter;
pub use route_match::{HeaderCondition, HeaderEdits, LocalAnswer, RequestFacts, Split, canonical};
pub use runtime::{
    BackendRuntime, FrontendStats, Health, HealthChange, PoolRuntime, Runtimes, now_ms,
};
pub use sticky_keys::StickyKeys;
pub use table::{Frontend, Route, Routed, RoutingTable};
