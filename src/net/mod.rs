//! The network: the HTTPS transport built from the settings, and the directory session (the
//! server's own token for the directory, its requests). Only the workers and group sync reach
//! it; a login never does (it asks a worker through shared memory).

mod directory;

pub use directory::DirectorySession;

use crate::settings;
use pgaadauth_core::http::Fetcher;

pub fn new_fetcher() -> Result<Fetcher, String> {
    Fetcher::new(
        settings::http_timeout(),
        &settings::text(&settings::CA_FILE),
        settings::ALLOW_HTTP.get(),
    )
}
