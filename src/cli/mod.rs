//! The pieces of the command line that are not argument parsing.

pub mod bench;
pub mod fetch;
pub mod inspect;
pub mod plot;
pub mod predict;
pub mod serve;
pub mod train;
