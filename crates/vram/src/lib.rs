//! Switchyard's VRAM manager: measures the GPU, keeps a reconciled ledger of what is loaded, and admits requests
//! through leases so that the GPU never runs out of memory and hot models stay warm.

pub mod error;
pub mod ledger;
pub mod policy;
pub mod probe;
pub mod shares;

pub use error::VramError;
pub use ledger::{Ledger, LedgerConfig, Plan};
pub mod events;
pub mod manager;
pub mod metrics;

pub use events::{NoopSink, VramEventSink};
pub use manager::{AdminOp, Lease, ManagerIo, ManagerOptions, VramManager};
pub use metrics::VramMetrics;
pub use probe::GpuProbe;
pub use shares::Shares;
pub mod view;
