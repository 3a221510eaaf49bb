//! Benchmark support for tokenbudget: the load driver that `cargo xtask bench` runs, and the
//! raw-SQL baselines the stores are measured against.

pub mod backends;
pub mod load;
pub mod raw_postgres;
pub mod raw_sqlite;
