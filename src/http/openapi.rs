//! `GET /api/v1/openapi.json`: the API's OpenAPI 3.1 document, built into the binary so the
//! document a client is generated from is always the one of the running version.
//!
//! It needs no token: it is the same static text in every sidesync of a version (the one in
//! the repository), says nothing about mailboxes, mail or the config, and a client generator
//! fetches it before it has credentials. Its `servers` entry is relative ("/"): the appliance
//! that served it, at whatever address and scheme the client reached it.

/// Where the document is served.
pub const PATH: &str = "/api/v1/openapi.json";

/// The document, as `docs/openapi.json` holds it.
pub const DOCUMENT: &str = include_str!("../../docs/openapi.json");

/// The media type it is served as.
pub const MEDIA_TYPE: &str = "application/json";
