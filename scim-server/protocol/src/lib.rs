//! SCIM 2.0 protocol engine (filled in by the protocol-engine issue).
