//! What the SCIM server and the operator share as processes, so both follow one convention:
//! Go-style durations in flags ([`duration`]), the log filter and format ([`logging`]), the
//! termination signal ([`shutdown`]), the probe endpoints ([`probes`]), the keyed token
//! verifiers with their key files ([`verifier`]) and the TLS crypto provider ([`tls`]).

pub mod duration;
pub mod listen;
pub mod logging;
pub mod probes;
pub mod shutdown;
pub mod tls;
pub mod verifier;
