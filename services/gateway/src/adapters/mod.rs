//! Rate-limit stores: [`memory`] (governor, per replica) and [`redis`] (one Lua GCRA script
//! per decision, shared by every replica).

pub mod memory;
pub mod redis;
