//! What the SCIM server and the operator share as processes, so both follow one convention:
//! Go-style durations in flags ([`duration`]), the log filter and format ([`logging`]), the
//! termination signal ([`shutdown`]) and the probe endpoints ([`probes`]).

pub mod duration;
pub mod logging;
pub mod probes;
pub mod shutdown;
