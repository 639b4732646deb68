//! Networking: DNS (the stream transports come next).

pub mod dns;
