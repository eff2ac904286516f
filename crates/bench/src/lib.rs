//! switchyard-bench: the macro benchmarks of Switchyard.
//!
//! Two binaries wire these modules: `switchyard-load` measures what the router adds to a request (latency, time to
//! first chunk, throughput, memory) against the simulator at time scale 0, and `switchyard-replay` replays a
//! Zipf-distributed request trace against the simulator's own (Ollama's) scheduling and through Switchyard with each
//! eviction strategy, counting cold loads, latency and out-of-memory events.
//!
//! Where things live: `stats` (percentiles and spreads), `process` (starting the real binaries on port 0 and reading
//! their memory), `stack` (a simulator and a router, as processes or in this process), `sim_host` (the
//! simulator on threads of its own, answering with TCP_NODELAY like Ollama), `load` (the closed-loop load
//! generator), `overhead` (the load tool's matrix and its report), `trace` (the seeded Zipf/Poisson trace),
//! `replay` (playing a trace and reading the simulated GPU's counters), `optimum` (the fewest loads any scheduler
//! could need for a trace on one GPU), `setup` (configuration and request bodies
//! both tools share), `machine` (what the figures were measured on), `cascade` (the split of the profiler's items,
//! the cascade configurations and the figures of `switchyard-cascade-bench`), `fleet` (the replay over several
//! boxes, each with its own node, spread by a Switchyard front or a plain load balancer's rules), `nginx` (nginx as a plain reverse
//! proxy) and `versus` (the load tool's side-by-side comparison with it).

pub mod cascade;
pub mod fleet;
pub mod load;
pub mod machine;
pub mod nginx;
pub mod optimum;
pub mod overhead;
pub mod process;
pub mod replay;
pub mod setup;
pub mod sim_host;
pub mod stack;
pub mod stats;
pub mod trace;
pub mod versus;
